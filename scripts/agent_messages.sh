#!/usr/bin/env bash
# Refresh the agent's Chinese message catalogue from the source and compile it.
#   scripts/agent_messages.sh          extract the _() and N_() messages of agent/, merge them into agent.po, compile agent.mo
#   scripts/agent_messages.sh compile  only compile agent.po to agent.mo
# Needs xgettext, msgmerge and msgfmt (the gettext package). Write the Chinese of new entries in agent.po, then run it again.
set -euo pipefail
cd "$(dirname "$0")/.."
catalogue=agent/locale/zh_CN/LC_MESSAGES
if [ "${1:-}" != "compile" ]; then
    template=$(mktemp --suffix=.pot)
    trap 'rm -f "$template"' EXIT
    find agent -name '*.py' -not -path '*/locale/*' | sort | xargs xgettext --language=Python --keyword=_ --keyword=N_ \
        --from-code=UTF-8 --no-wrap --sort-by-file --package-name=agent --output="$template"
    if [ -f "$catalogue/agent.po" ]; then
        msgmerge --quiet --no-wrap --no-fuzzy-matching --update --backup=none "$catalogue/agent.po" "$template"
    else
        msginit --no-translator --no-wrap --locale=zh_CN.UTF-8 --input="$template" --output-file="$catalogue/agent.po"
    fi
fi
msgfmt --check --output-file="$catalogue/agent.mo" "$catalogue/agent.po"
