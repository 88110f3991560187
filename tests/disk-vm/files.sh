# tests/disk-vm/files.sh: what the disk test's files hold, sourced by
# make-image (the files the image starts with) and run (the files the guest
# writes, and the checksums both boots expect). Every byte is known from a
# file's name and size alone, so any run can rebuild it: numbered lines
# "NAME 000000000000001", each 4 KiB block unlike every other one.
# shellcheck shell=bash

# gen NAME SIZE: SIZE bytes of NAME's content on stdout.
gen() {
    # head closes the pipe at SIZE bytes: seq ending on SIGPIPE is expected.
    { seq -f "$1 %015.0f" 1 $(($2 / 16 + 1)) 2> /dev/null || :; } | head -c "$2"
}

# The files in the image as made (path size), below the ext4 root.
seed_files=(
    "seed/big.bin 12582912"
    "seed/patched.bin 2097152"
    "seed/gone.bin 1048576"
    "seed/docs/small.txt 1000"
    "seed/empty 0"
)
# The files the first boot writes (path size).
new_files=(
    "new/one.bin 4194304"
    "new/two.bin 1052673"
    "new/deep/three.txt 5000"
)
# Ranges the first boot overwrites in place in seed/patched.bin (offset
# size), with the content of gen "patchN" (N from 1): inside a block, across
# two, and a whole block.
patches=(
    "12388 5000"
    "1048566 20"
    "2093056 4096"
)
# The file the first boot removes.
removed=seed/gone.bin
