# SPDX-License-Identifier: MPL-2.0
# bash completion for zmesh: subcommands, then each subcommand's flags and their fixed values.
# It asks the zmesh binary being completed (`zmesh --help`, `zmesh CMD --help`, a few ms), so it
# always matches that binary. Plain bash that zsh's bashcompinit also runs (no mapfile, no
# indirection): _zmesh (zsh) sources it.
# Installed by `cmake --install` into share/bash-completion/completions/zmesh.

_zmesh_commands() { # the subcommands: the two-space-indented words of `zmesh --help`
    "$1" --help 2>/dev/null | sed -n 's/^  \([a-z][a-z0-9-]*\) .*/\1/p'
}

_zmesh_flags() { # the flags `zmesh CMD --help` lists (Boost.Program_options layout)
    # shellcheck disable=SC2086 # CMD may be two words: bench mdp
    "$1" $2 --help 2>/dev/null |
        sed -n -e 's/^  *-[a-zA-Z] \[ \(--[a-z0-9-]*\) \].*/\1/p' \
               -e 's/^  *\(--[a-z0-9][a-z0-9-]*\).*/\1/p'
}

_zmesh_bash() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local bin=${COMP_WORDS[0]} cmd="" i
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        if [[ ${COMP_WORDS[i]} != -* ]]; then
            cmd=${COMP_WORDS[i]}
            # bench has subcommands of its own: complete their flags.
            if [[ $cmd == bench && $((i + 1)) -lt $COMP_CWORD ]]; then cmd="bench ${COMP_WORDS[i+1]}"; fi
            break
        fi
    done
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "$(_zmesh_commands "$bin") --help" -- "$cur"))
        return
    fi
    case $prev in
        --log-level) COMPREPLY=($(compgen -W "error warn info debug" -- "$cur")); return ;;
        --log-format) COMPREPLY=($(compgen -W "text json" -- "$cur")); return ;;
        --format) COMPREPLY=($(compgen -W "text json" -- "$cur")); return ;;
        --sync) COMPREPLY=($(compgen -W "full normal" -- "$cur")); return ;;
        --ha) COMPREPLY=($(compgen -W "primary backup" -- "$cur")); return ;;
        --mode) COMPREPLY=($(compgen -W "broker direct raw proxy" -- "$cur")); return ;;
        --dedupe|--curve) COMPREPLY=($(compgen -W "on off both" -- "$cur")); return ;;
        --spin) # a value for the benchmarks' --spin; a plain switch elsewhere (zmesh sub)
            if [[ $cmd == bench* ]]; then COMPREPLY=($(compgen -W "on off both" -- "$cur")); return; fi ;;
        --config|--curve-secret|--curve-server-key|--curve-key|--acl|--store|--body-file|--state)
            COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --allow|--dir|--run-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_zmesh_flags "$bin" "$cmd")" -- "$cur"))
    elif [[ $cmd == up ]]; then # zmesh up [--check] FILE: topology files (and directories)
        COMPREPLY=($(compgen -f -X '!*.toml' -- "$cur") $(compgen -d -- "$cur"))
    elif [[ $COMP_CWORD -eq $((i + 1)) ]]; then
        # The first word after a subcommand that takes an action.
        case $cmd in
            bench) COMPREPLY=($(compgen -W "mdp pubsub titanic mdp-peer freelance scale" -- "$cur")) ;;
            directory) COMPREPLY=($(compgen -W "list lookup register unregister" -- "$cur")) ;;
            dlq) COMPREPLY=($(compgen -W "list show replay purge" -- "$cur")) ;;
            clone) COMPREPLY=($(compgen -W "get set del watch" -- "$cur")) ;;
        esac
    fi
}

complete -F _zmesh_bash zmesh
