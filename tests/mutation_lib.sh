# shellcheck shell=bash
# Shared machinery of the mutation checks (tests/sim/mutation_check.sh,
# tests/wsim/mutation_check.sh, tests/nemesis/mutation_check.sh): each keeps
# its own table, command line and output, and sources this file for reading
# the table, copying the tree and applying one mutation to the copy. Never
# touches the tree it copies.
#
# The table: the caller sets MUTATIONS_PY to Python source defining
#   M = {name: (what it breaks, [more fields,] [(file, old, new), ...])}
# with the edits always last.

# mutation_names: the table's names, one a line, in table order.
mutation_names() {
    python3 -c "$MUTATIONS_PY"$'\nfor k in M: print(k)'
}

# mutation_field NAME I: prints field I of NAME's row (0: what it breaks).
mutation_field() {
    python3 -c "$MUTATIONS_PY"$'\nimport sys\nprint(M[sys.argv[1]][int(sys.argv[2])])' "$1" "$2"
}

# mutation_apply DIR NAME [loose]: applies NAME's edits to the files under
# DIR (the edits' paths are relative to DIR). Each old text must occur
# exactly once; with `loose`, whitespace runs match loosely (a reformatted
# file still matches). Returns 1 and prints the file when an old text does
# not occur exactly once (the mutation no longer applies).
mutation_apply() {
    python3 -c "$MUTATIONS_PY"'
import re, sys
root, name, loose = sys.argv[1], sys.argv[2], len(sys.argv) > 3 and sys.argv[3] == "loose"
for f, old, new in M[name][-1]:
    path = root + "/" + f
    src = open(path).read()
    if loose:
        pat = r"\s*".join(re.escape(tok) for tok in old.split())
        if len(re.findall(pat, src)) != 1:
            print(f)
            sys.exit(1)
        src = re.sub(pat, lambda m: new, src)
    else:
        if src.count(old) != 1:
            print(f)
            sys.exit(1)
        src = src.replace(old, new)
    open(path, "w").write(src)
' "$@"
}

# mutation_scratch_tree ROOT PREFIX: a new directory /tmp/PREFIX-XXXXXX
# holding the files of the git tree at ROOT (tracked, and untracked ones not
# ignored: the working state, not a commit); prints its path.
mutation_scratch_tree() {
    local dir
    dir=$(mktemp -d "/tmp/$2-XXXXXX")
    (cd "$1" && git ls-files -z --cached --others --exclude-standard |
        tar --null -T - -cf - | tar -xf - -C "$dir")
    echo "$dir"
}

# mutation_build DIR TARGET: configures the scratch tree DIR (RelWithDebInfo,
# Ninja when installed) into DIR/build and builds TARGET, quietly; returns
# the build's status.
mutation_build() {
    local gen=()
    if command -v ninja >/dev/null; then gen=(-G Ninja); fi
    cmake -S "$1" -B "$1/build" ${gen[@]+"${gen[@]}"} -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
        cmake --build "$1/build" -j "$(nproc)" --target "$2" >/dev/null
}

# mutation_prepare ROOT NAME PREFIX: a scratch tree of ROOT (as
# mutation_scratch_tree) with NAME applied; prints its path. Returns 1, says
# which file on stderr and removes the copy when the mutation no longer
# applies.
mutation_prepare() {
    local dir file
    dir=$(mutation_scratch_tree "$1" "$3")
    if ! file=$(mutation_apply "$dir" "$2"); then
        echo "mutation $2 no longer applies to $file" >&2
        rm -rf "$dir"
        return 1
    fi
    echo "$dir"
}
