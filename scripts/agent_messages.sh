#!/usr/bin/env bash
# Refresh the agent's Chinese message catalogue from the source and compile it.
#   scripts/agent_messages.sh          extract the _() and N_() messages of agent/, and the sentences and hints of the
#                                      error tables and the OS error reasons in certification/errors.py, merge them into
#                                      agent.po, compile agent.mo
#   scripts/agent_messages.sh compile  only compile agent.po to agent.mo
# Needs xgettext, msgmerge and msgfmt (the gettext package). Write the Chinese of new entries in agent.po, then run it again.
set -euo pipefail
cd "$(dirname "$0")/.."
catalogue=agent/locale/zh_CN/LC_MESSAGES
if [ "${1:-}" != "compile" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    template=$work/agent.pot
    # The core's error tables are plain strings; write them as _() calls of a file named like the table's source.
    mkdir -p "$work/certification"
    .venv/bin/python -c 'from certification.errors import BUNDLE_ERRORS, OS_ERROR_REASONS, TICKET_ERRORS
for table in (BUNDLE_ERRORS, TICKET_ERRORS):
    for code, (messages, hint) in table.items():
        for message in (messages,) if isinstance(messages, str) else messages:
            print(f"_({message!r})  # {code}")
        print(f"_({hint!r})")
for name, reason in OS_ERROR_REASONS.items():
    print(f"_({reason!r})  # {name}")' > "$work/certification/errors.py"
    find agent -name '*.py' -not -path '*/locale/*' | sort | xargs xgettext --language=Python --keyword=_ --keyword=N_ --keyword=ngettext:1,2 \
        --from-code=UTF-8 --no-wrap --sort-by-file --package-name=agent --output="$work/agent-source.pot"
    (cd "$work" && xgettext --language=Python --keyword=_ --from-code=UTF-8 --no-wrap --no-location \
        --package-name=agent --output=core.pot certification/errors.py)
    msgcat --no-wrap --use-first --output-file="$template" "$work/agent-source.pot" "$work/core.pot"
    if [ -f "$catalogue/agent.po" ]; then
        msgmerge --quiet --no-wrap --no-fuzzy-matching --update --backup=none "$catalogue/agent.po" "$template"
    else
        msginit --no-translator --no-wrap --locale=zh_CN.UTF-8 --input="$template" --output-file="$catalogue/agent.po"
    fi
fi
msgfmt --check --output-file="$catalogue/agent.mo" "$catalogue/agent.po"
