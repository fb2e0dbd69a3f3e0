"""cc_fuzz_target: a libFuzzer binary, built only with --config=fuzz (clang)."""

def cc_fuzz_target(name, srcs, deps = [], **kwargs):
    """A libFuzzer target `name` (LLVMFuzzerTestOneInput in `srcs`).

    Tagged "manual" (plain `bazel build //...` with GCC skips it) and
    "fuzz_target" (`./dev fuzz` finds it with bazel query). Its seed corpus is
    the directory corpus/<name> beside the BUILD file, which ./dev fuzz copies
    to a scratch directory for each run (the checked-in one does not grow).
    """
    native.cc_binary(
        name = name,
        srcs = srcs,
        deps = deps,
        linkopts = ["-fsanitize=fuzzer"],
        tags = ["manual", "fuzz_target"],
        **kwargs
    )
