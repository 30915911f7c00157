"""Forms of the vendor pages for cards and keys."""

from django import forms
from django.utils.translation import gettext_lazy as _

DATA_TYPES = ["fp32", "tf32", "bf16", "fp16", "fp8", "int8"]


class VendorChoiceForm(forms.Form):
    vendor = forms.ChoiceField(label=_("Vendor"))

    def __init__(self, *args, vendors, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["vendor"].choices = [(vendor.slug, vendor.name) for vendor in vendors]


class CardForm(VendorChoiceForm):
    model = forms.CharField(label=_("Card model"), max_length=200, help_text=_("as the agent writes it in bundles"))
    serial = forms.CharField(label=_("Serial"), max_length=200)
    memory_gib = forms.IntegerField(label=_("Memory (GiB)"), min_value=1)
    interconnect = forms.CharField(label=_("Interconnect"), max_length=200)
    peak_source = forms.CharField(
        label=_("Datasheet source"), max_length=500, help_text=_("datasheet title, version and page, or its address")
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for data_type in DATA_TYPES:
            self.fields[f"peak_{data_type}"] = forms.FloatField(
                label=_("Peak dense TFLOPS, %(type)s") % {"type": data_type}, min_value=0.001, required=False
            )

    def card_fields(self) -> dict:
        data = self.cleaned_data
        peaks = {data_type: data[f"peak_{data_type}"] for data_type in DATA_TYPES if data.get(f"peak_{data_type}")}
        names = ["model", "serial", "memory_gib", "interconnect", "peak_source"]
        return {**{name: data[name] for name in names}, "peak_tflops": peaks}


class KeyForm(VendorChoiceForm):
    public_key_pem = forms.CharField(
        label=_("Public key (PEM)"), widget=forms.Textarea(attrs={"rows": 5}),
        help_text=_("the .pub file that 'python -m agent keygen' wrote"),
    )
