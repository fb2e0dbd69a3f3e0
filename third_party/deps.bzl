"""Everything a workspace needs to build @asyncio_cpp's targets, offline.

A user's WORKSPACE:

    local_repository(name = "asyncio_cpp", path = "...")  # or http_archive
    load("@asyncio_cpp//third_party:deps.bzl", "asyncio_cpp_deps")
    asyncio_cpp_deps()

and in its .bazelrc `build --cxxopt=-std=c++20 --host_cxxopt=-std=c++20`.
This repository's own WORKSPACE calls the same macro.
"""

load("//third_party:system_libs.bzl", "asyncio_cpp_system_deps")

# Bazel 4.2.3 appends a WORKSPACE suffix that fetches these three with
# http_archive unless they are already defined; offline, that fails even for
# a pure C++ build. third_party/bazel_stubs holds small stand-ins.
_BAZEL_IMPLICIT_REPOSITORIES = ["rules_cc", "rules_java", "remote_coverage_tools"]

def _bazel_stub_repository_impl(rctx):
    # Found through a file of a package that exists in every workspace that
    # loads this one (bazel_stubs itself is in .bazelignore).
    third_party = rctx.path(Label("//third_party:deps.bzl")).dirname
    stub = third_party.get_child("bazel_stubs").get_child(rctx.attr.name)
    for entry in stub.readdir():
        rctx.symlink(entry, entry.basename)

_bazel_stub_repository = repository_rule(
    implementation = _bazel_stub_repository_impl,
    local = True,
)

def asyncio_cpp_deps(lazy = False):
    """Declares the repositories @asyncio_cpp's targets need.

    Names a workspace has already defined are left alone: a user with
    internet access can define rules_cc or @com_google_absl first (e.g. as
    http_archive) and this macro keeps theirs.

    Args:
      lazy: passed to asyncio_cpp_system_deps: a missing Debian package fails
        only the targets that use it instead of the fetch.
    """
    for name in _BAZEL_IMPLICIT_REPOSITORIES:
        if not native.existing_rule(name):
            _bazel_stub_repository(name = name)
    asyncio_cpp_system_deps(lazy = lazy)
