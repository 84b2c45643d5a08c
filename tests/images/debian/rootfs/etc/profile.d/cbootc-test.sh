# cbootc test image: a console that a test harness can drive (plain prompt,
# no colours, no pager, no bracketed paste).
export SYSTEMD_PAGER= SYSTEMD_COLORS=0 SYSTEMD_URLIFY=0 PAGER=cat NO_COLOR=1
if [ -n "${BASH_VERSION:-}" ] && [ "${-#*i}" != "$-" ]; then
    PS1='\u@\h:\w\$ '
    PROMPT_COMMAND=
    bind 'set enable-bracketed-paste off' 2>/dev/null
fi
