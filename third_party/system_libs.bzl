"""Repository rules that expose Debian-installed C++ libraries under upstream names.

No internet here, so the third-party libraries come from Debian packages.
`system_library` generates a repository whose
BUILD files mirror the upstream projects' labels (`@com_google_absl//absl/strings`,
`@com_google_googletest//:gtest_main`, ...), so our BUILD files read exactly as
they would against upstream, and anyone with internet access can swap one of
these for an `http_archive` without touching a BUILD file.

Headers are taken from the system include path (/usr/include is a builtin
include directory of the auto-configured toolchain; no -I is added). Shared
libraries are linked with `linkopts`; static archives are symlinked into the
generated repository and wrapped in `cc_import`, so Bazel orders them correctly.

If a required file is missing:
  * `lazy = False`: fetching the repository fails, naming the Debian packages.
    Bazel only fetches a repository when some loaded target refers to it, so this
    never breaks `bazel build //...` for code that does not use the library.
  * `lazy = True`: the repository is still created, but each of its targets
    depends on a generated source whose genrule fails with the same message.
    The workspace loads and the error appears only when a target is built.

After installing a package, run `bazel sync --configure` (or `bazel shutdown`)
so the repository is generated again.
"""

# Upstream Abseil labels (package -> target -> libabsl_* libraries). Generated
# from Debian libabsl-dev 20220623's pkg-config files (`pkg-config --libs
# absl_<module>`), i.e. each list is the full transitive link closure.
_ABSL_TARGETS = {
    "absl/algorithm": {
        "algorithm": [],
        "container": [],
    },
    "absl/base": {
        "base": ["base", "raw_logging_internal", "log_severity", "spinlock_wait"],
        "config": [],
        "core_headers": [],
        "dynamic_annotations": [],
        "log_severity": ["log_severity"],
    },
    "absl/cleanup": {
        "cleanup": [],
    },
    "absl/container": {
        "btree": ["cord", "cordz_info", "cord_internal", "cordz_functions", "exponential_biased", "cordz_handle", "synchronization", "graphcycles_internal", "stacktrace", "symbolize", "debugging_internal", "demangle_internal", "malloc_internal", "time", "civil_time", "time_zone", "bad_optional_access", "strings", "strings_internal", "base", "spinlock_wait", "int128", "throw_delegate", "raw_logging_internal", "log_severity"],
        "fixed_array": ["throw_delegate", "raw_logging_internal", "log_severity"],
        "flat_hash_map": ["cord", "cordz_info", "cord_internal", "cordz_functions", "cordz_handle", "hash", "city", "bad_variant_access", "low_level_hash", "raw_hash_set", "bad_optional_access", "hashtablez_sampler", "exponential_biased", "synchronization", "graphcycles_internal", "stacktrace", "symbolize", "debugging_internal", "demangle_internal", "malloc_internal", "time", "civil_time", "strings", "strings_internal", "base", "spinlock_wait", "int128", "time_zone", "throw_delegate", "raw_logging_internal", "log_severity"],
        "flat_hash_set": ["cord", "cordz_info", "cord_internal", "cordz_functions", "cordz_handle", "hash", "city", "bad_variant_access", "low_level_hash", "raw_hash_set", "bad_optional_access", "hashtablez_sampler", "exponential_biased", "synchronization", "graphcycles_internal", "stacktrace", "symbolize", "debugging_internal", "demangle_internal", "malloc_internal", "time", "civil_time", "strings", "strings_internal", "base", "spinlock_wait", "int128", "throw_delegate", "raw_logging_internal", "log_severity", "time_zone"],
        "inlined_vector": ["throw_delegate", "raw_logging_internal", "log_severity"],
        "node_hash_map": ["cord", "cordz_info", "cord_internal", "cordz_functions", "cordz_handle", "hash", "city", "bad_variant_access", "low_level_hash", "raw_hash_set", "bad_optional_access", "hashtablez_sampler", "exponential_biased", "synchronization", "graphcycles_internal", "stacktrace", "symbolize", "debugging_internal", "demangle_internal", "malloc_internal", "time", "civil_time", "strings", "strings_internal", "base", "spinlock_wait", "int128", "time_zone", "throw_delegate", "raw_logging_internal", "log_severity"],
        "node_hash_set": ["cord", "cordz_info", "cord_internal", "cordz_functions", "cordz_handle", "hash", "city", "bad_variant_access", "low_level_hash", "raw_hash_set", "bad_optional_access", "hashtablez_sampler", "exponential_biased", "synchronization", "graphcycles_internal", "stacktrace", "symbolize", "debugging_internal", "demangle_internal", "malloc_internal", "time", "civil_time", "strings", "strings_internal", "base", "spinlock_wait", "int128", "throw_delegate", "raw_logging_internal", "log_severity", "time_zone"],
    },
    "absl/debugging": {
        "failure_signal_handler": ["failure_signal_handler", "examine_stack", "symbolize", "demangle_internal", "malloc_internal", "strings", "strings_internal", "int128", "throw_delegate", "stacktrace", "debugging_internal", "base", "spinlock_wait", "raw_logging_internal", "log_severity"],
        "leak_check": ["leak_check"],
        "stacktrace": ["stacktrace", "debugging_internal", "raw_logging_internal", "log_severity"],
        "symbolize": ["symbolize", "debugging_internal", "demangle_internal", "malloc_internal", "strings", "strings_internal", "base", "spinlock_wait", "int128", "throw_delegate", "raw_logging_internal", "log_severity"],
    },
    "absl/flags": {
        "flag": ["flags_internal", "flags_marshalling", "str_format_internal", "flags_reflection", "flags_private_handle_accessor", "flags_commandlineflag", "flags_commandlineflag_internal", "flags_config", "flags_program_name", "cord", "cordz_info", "cord_internal", "cordz_functions", "cordz_handle", "hash", "city", "bad_variant_access", "low_level_hash", "raw_hash_set", "bad_optional_access", "hashtablez_sampler", "exponential_biased", "synchronization", "graphcycles_internal", "stacktrace", "symbolize", "debugging_internal", "demangle_internal", "malloc_internal", "time", "civil_time", "time_zone", "strings", "strings_internal", "base", "spinlock_wait", "int128", "throw_delegate", "raw_logging_internal", "log_severity"],
        "parse": ["flags_parse", "flags_usage", "flags_usage_internal", "flags_internal", "flags_marshalling", "str_format_internal", "flags_reflection", "flags_private_handle_accessor", "flags_commandlineflag", "flags_commandlineflag_internal", "flags_config", "flags_program_name", "cord", "cordz_info", "cord_internal", "cordz_functions", "cordz_handle", "hash", "city", "bad_variant_access", "low_level_hash", "raw_hash_set", "bad_optional_access", "hashtablez_sampler", "exponential_biased", "synchronization", "graphcycles_internal", "stacktrace", "symbolize", "debugging_internal", "demangle_internal", "malloc_internal", "time", "civil_time", "strings", "strings_internal", "base", "spinlock_wait", "int128", "throw_delegate", "raw_logging_internal", "log_severity", "time_zone"],
        "usage": ["flags_usage", "flags_usage_internal", "flags_internal", "flags_marshalling", "str_format_internal", "flags_reflection", "flags_private_handle_accessor", "flags_commandlineflag", "flags_commandlineflag_internal", "flags_config", "flags_program_name", "cord", "cordz_info", "cord_internal", "cordz_functions", "cordz_handle", "hash", "city", "bad_variant_access", "low_level_hash", "raw_hash_set", "bad_optional_access", "hashtablez_sampler", "exponential_biased", "synchronization", "graphcycles_internal", "stacktrace", "symbolize", "debugging_internal", "demangle_internal", "malloc_internal", "time", "civil_time", "strings", "strings_internal", "base", "spinlock_wait", "int128", "throw_delegate", "raw_logging_internal", "log_severity", "time_zone"],
    },
    "absl/functional": {
        "any_invocable": [],
        "bind_front": [],
        "function_ref": [],
    },
    "absl/hash": {
        "hash": ["hash", "city", "strings", "strings_internal", "throw_delegate", "bad_optional_access", "bad_variant_access", "low_level_hash", "base", "raw_logging_internal", "log_severity", "spinlock_wait", "int128"],
    },
    "absl/memory": {
        "memory": [],
    },
    "absl/meta": {
        "type_traits": [],
    },
    "absl/numeric": {
        "bits": [],
        "int128": ["int128"],
    },
    "absl/random": {
        "random": ["random_distributions", "throw_delegate", "raw_logging_internal", "throw_delegate", "raw_logging_internal", "raw_logging_internal", "raw_logging_internal", "random_seed_sequences", "random_internal_pool_urbg", "random_internal_randen", "random_internal_randen_hwaes", "random_internal_randen_hwaes_impl", "random_internal_randen_slow", "random_internal_platform", "raw_logging_internal", "throw_delegate", "raw_logging_internal", "random_internal_seed_material", "bad_optional_access", "raw_logging_internal", "strings", "strings_internal", "base", "spinlock_wait", "int128", "random_seed_gen_exception", "throw_delegate", "raw_logging_internal", "log_severity"],
        "distributions": ["random_distributions", "strings", "strings_internal", "base", "spinlock_wait", "int128", "throw_delegate", "raw_logging_internal", "log_severity"],
        "bit_gen_ref": [],
        "seed_sequences": ["random_seed_sequences", "random_internal_pool_urbg", "random_internal_randen", "random_internal_randen_hwaes", "random_internal_randen_hwaes_impl", "random_internal_randen_slow", "random_internal_platform", "raw_logging_internal", "throw_delegate", "raw_logging_internal", "random_internal_seed_material", "bad_optional_access", "raw_logging_internal", "strings", "strings_internal", "base", "spinlock_wait", "int128", "random_seed_gen_exception", "throw_delegate", "raw_logging_internal", "log_severity"],
    },
    "absl/status": {
        "status": ["status", "cord", "cordz_info", "cord_internal", "cordz_functions", "exponential_biased", "cordz_handle", "synchronization", "graphcycles_internal", "time", "civil_time", "time_zone", "bad_optional_access", "stacktrace", "str_format_internal", "strerror", "symbolize", "debugging_internal", "demangle_internal", "malloc_internal", "strings", "strings_internal", "base", "spinlock_wait", "int128", "throw_delegate", "raw_logging_internal", "log_severity"],
        "statusor": ["statusor", "status", "cord", "cordz_info", "cord_internal", "cordz_functions", "exponential_biased", "cordz_handle", "synchronization", "graphcycles_internal", "time", "civil_time", "time_zone", "bad_optional_access", "stacktrace", "str_format_internal", "strerror", "symbolize", "debugging_internal", "demangle_internal", "malloc_internal", "strings", "strings_internal", "base", "spinlock_wait", "int128", "throw_delegate", "bad_variant_access", "raw_logging_internal", "log_severity"],
    },
    "absl/strings": {
        "strings": ["strings", "strings_internal", "base", "spinlock_wait", "int128", "throw_delegate", "raw_logging_internal", "log_severity"],
        "str_format": ["str_format_internal", "strings", "strings_internal", "base", "spinlock_wait", "int128", "throw_delegate", "raw_logging_internal", "log_severity"],
        "cord": ["cord", "cordz_info", "cord_internal", "cordz_functions", "exponential_biased", "cordz_handle", "synchronization", "graphcycles_internal", "stacktrace", "symbolize", "debugging_internal", "demangle_internal", "malloc_internal", "time", "civil_time", "time_zone", "bad_optional_access", "strings", "strings_internal", "base", "spinlock_wait", "int128", "throw_delegate", "raw_logging_internal", "log_severity"],
    },
    "absl/synchronization": {
        "synchronization": ["synchronization", "graphcycles_internal", "stacktrace", "symbolize", "debugging_internal", "demangle_internal", "malloc_internal", "time", "civil_time", "strings", "strings_internal", "base", "spinlock_wait", "int128", "throw_delegate", "raw_logging_internal", "log_severity", "time_zone"],
    },
    "absl/time": {
        "time": ["time", "civil_time", "strings", "strings_internal", "base", "spinlock_wait", "int128", "throw_delegate", "raw_logging_internal", "log_severity", "time_zone"],
    },
    "absl/types": {
        "any": ["bad_any_cast_impl", "raw_logging_internal", "log_severity"],
        "compare": [],
        "optional": ["bad_optional_access", "raw_logging_internal", "log_severity"],
        "span": ["throw_delegate", "raw_logging_internal", "log_severity"],
        "variant": ["bad_variant_access", "raw_logging_internal", "log_severity"],
    },
    "absl/utility": {
        "utility": [],
    },
}

# The prebuilt libabsl_synchronization.so is invisible to ThreadSanitizer; under
# --config=tsan every target linking it also links an annotating shim
# (see //third_party/sanitizers:BUILD).
# The labels are written into other repositories' BUILD files, so they name
# this repository explicitly: "@//..." here, "@asyncio_cpp//..." in a
# workspace that uses this one.
def _absolute(label):
    text = str(label)
    return text if text.startswith("@") else "@" + text

_ABSL_TSAN_SHIM_DEPS = """select({
    "%s": ["%s"],
    "//conditions:default": [],
})""" % (
    _absolute(Label("//third_party/sanitizers:tsan")),
    _absolute(Label("//third_party/sanitizers:absl_synchronization_tsan")),
)

def _absl_build_files():
    files = {}
    for pkg, targets in _ABSL_TARGETS.items():
        lines = [
            "# Generated by //third_party:system_libs.bzl over Debian's libabsl-dev.",
            'package(default_visibility = ["//visibility:public"])',
            "",
        ]
        for name, libs in targets.items():
            linkopts = ["-labsl_" + lib for lib in libs]
            if linkopts:
                linkopts.append("-lpthread")
            if "synchronization" in libs:
                lines.append(
                    "cc_library(name = %r, linkopts = %r, deps = %s)" %
                    (name, linkopts, _ABSL_TSAN_SHIM_DEPS),
                )
            else:
                lines.append("cc_library(name = %r, linkopts = %r)" % (name, linkopts))
        files[pkg + "/BUILD"] = "\n".join(lines) + "\n"
    return files

_GTEST_BUILD = """\
# Generated by //third_party:system_libs.bzl over Debian's libgtest-dev/libgmock-dev.
# Upstream's `gtest` includes Google Mock; `gmock` is kept as an alias for it.
package(default_visibility = ["//visibility:public"])

cc_import(name = "_gtest_a", static_library = "lib/libgtest.a")

cc_import(name = "_gmock_a", static_library = "lib/libgmock.a")

cc_library(
    name = "gtest",
    linkopts = ["-lpthread"],
    deps = [":_gmock_a", ":_gtest_a"],
)

cc_import(name = "_gtest_main_a", static_library = "lib/libgtest_main.a")

cc_library(name = "gtest_main", deps = [":_gtest_main_a", ":gtest"])

alias(name = "gmock", actual = ":gtest")

cc_import(name = "_gmock_main_a", static_library = "lib/libgmock_main.a")

cc_library(name = "gmock_main", deps = [":_gmock_main_a", ":gtest"])
"""

_BENCHMARK_BUILD = """\
# Generated by //third_party:system_libs.bzl over Debian's libbenchmark-dev.
package(default_visibility = ["//visibility:public"])

cc_library(name = "benchmark", linkopts = ["-lbenchmark", "-lpthread"])

cc_import(name = "_benchmark_main_a", static_library = "lib/libbenchmark_main.a")

cc_library(name = "benchmark_main", deps = [":_benchmark_main_a", ":benchmark"])
"""

_CARES_BUILD = """\
# Generated by //third_party:system_libs.bzl over Debian's libc-ares-dev.
package(default_visibility = ["//visibility:public"])

cc_library(name = "ares", linkopts = ["-lcares"])
"""

_OPENSSL_BUILD = """\
# Generated by //third_party:system_libs.bzl over Debian's libssl-dev (OpenSSL 3).
package(default_visibility = ["//visibility:public"])

cc_library(name = "crypto", linkopts = ["-lcrypto", "-lpthread"])

cc_library(name = "ssl", linkopts = ["-lssl"], deps = [":crypto"])
"""

_GRPC_BUILD = """\
# Generated by //third_party:system_libs.bzl over Debian's libgrpc++-dev.
# Link line: %{PKG_CONFIG_LIBS_SOURCE}
package(default_visibility = ["//visibility:public"])

# gRPC links Debian's libabsl_synchronization (absl::Mutex is its mutex), which
# ThreadSanitizer cannot see into: under --config=tsan, link the same
# annotating shim as the @com_google_absl targets do.
cc_library(name = "grpc++", linkopts = %{PKG_CONFIG_LIBS}, deps = %{ABSL_TSAN_SHIM_DEPS})

alias(name = "grpcpp", actual = ":grpc++")

cc_library(name = "grpc", linkopts = %{PKG_CONFIG_LIBS}, deps = %{ABSL_TSAN_SHIM_DEPS})

exports_files(["grpc_cpp_plugin"])
"""

def _run(rctx, args):
    """Runs a command; returns its stripped stdout, or None if it failed or is absent."""
    if not rctx.which(args[0]):
        return None
    result = rctx.execute(args)
    if result.return_code != 0:
        return None
    return result.stdout.strip()

def _multiarch(rctx):
    return (_run(rctx, ["dpkg-architecture", "-qDEB_HOST_MULTIARCH"]) or
            _run(rctx, ["gcc", "-print-multiarch"]) or
            "x86_64-linux-gnu")


def _write_failing_repo(rctx, message):
    """Every declared target builds a genrule that fails with `message`."""
    root_build = [
        "# Generated by //third_party:system_libs.bzl: required system files are missing.",
        'package(default_visibility = ["//visibility:public"])',
        "",
        "genrule(",
        '    name = "missing_system_library",',
        '    outs = ["missing_system_library.cc"],',
        "    cmd = %r," % ("echo %s >&2; exit 1" % _shell_quote(message)),
        ")",
        "",
    ]
    for pkg, names in rctx.attr.targets.items():
        stubs = [
            'cc_library(name = %r, srcs = ["//:missing_system_library.cc"])' % name
            for name in names
        ]
        if pkg == "":
            root_build.extend(stubs)
        else:
            rctx.file(pkg + "/BUILD", "\n".join([
                'package(default_visibility = ["//visibility:public"])',
                "",
            ] + stubs) + "\n")
    rctx.file("BUILD", "\n".join(root_build) + "\n")

def _shell_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"

def _system_library_impl(rctx):
    rctx.file("WORKSPACE", 'workspace(name = "%s")\n' % rctx.name)
    libdir = "/usr/lib/" + _multiarch(rctx)
    required = [f.replace("%{LIBDIR}", libdir) for f in rctx.attr.required_files]
    missing = [f for f in required if not rctx.path(f).exists]
    if missing:
        message = (
            "@{repo}: system library not installed (missing {files}). " +
            "Install the Debian package(s) {pkgs}: " +
            "apt-get install -y --no-install-recommends {pkgs} " +
            "(as root), then run `bazel sync --configure` (or `bazel shutdown`) " +
            "so Bazel looks again."
        ).format(
            repo = rctx.name,
            files = ", ".join(missing),
            pkgs = " ".join(rctx.attr.debian_packages),
        )
        if not rctx.attr.lazy:
            fail(message)
        _write_failing_repo(rctx, message)
        return

    for dst, src in rctx.attr.symlinks.items():
        rctx.symlink(src.replace("%{LIBDIR}", libdir), dst)

    libs = list(rctx.attr.fallback_linkopts)
    libs_source = "fallback list in //third_party:system_libs.bzl"
    if rctx.attr.pkg_config:
        out = _run(rctx, ["pkg-config", "--libs"] + rctx.attr.pkg_config)
        if out:
            libs = out.split(" ")
            libs_source = "pkg-config --libs " + " ".join(rctx.attr.pkg_config)
    for path, content in rctx.attr.build_files.items():
        content = content.replace("%{PKG_CONFIG_LIBS_SOURCE}", libs_source)
        content = content.replace("%{PKG_CONFIG_LIBS}", repr([l for l in libs if l]))
        rctx.file(path, content)

system_library = repository_rule(
    implementation = _system_library_impl,
    local = True,
    configure = True,
    attrs = {
        "build_files": attr.string_dict(
            mandatory = True,
            doc = "Repository-relative BUILD file path -> content.",
        ),
        "targets": attr.string_list_dict(
            mandatory = True,
            doc = "Package ('' for root) -> target names, used to write failing stubs when lazy.",
        ),
        "required_files": attr.string_list(
            doc = "Absolute paths that must exist (%{LIBDIR} = /usr/lib/<multiarch>).",
        ),
        "debian_packages": attr.string_list(
            mandatory = True,
            doc = "Debian packages that provide the required files (named in errors).",
        ),
        "symlinks": attr.string_dict(
            doc = "Repository-relative path -> absolute system path to symlink.",
        ),
        "pkg_config": attr.string_list(
            doc = "pkg-config modules whose --libs replace %{PKG_CONFIG_LIBS}.",
        ),
        "fallback_linkopts": attr.string_list(
            doc = "Used for %{PKG_CONFIG_LIBS} when pkg-config is unavailable.",
        ),
        "lazy": attr.bool(
            default = False,
            doc = "If true, a missing library fails only the targets that use it.",
        ),
    },
)

def _targets_of(build_files):
    """Package -> target names, parsed from generated BUILD contents."""
    result = {}
    for path, content in build_files.items():
        pkg = path[:-len("/BUILD")] if path.endswith("/BUILD") else ""
        names = []
        for line in content.split("\n"):
            i = line.find('name = "')
            if i < 0 or line.lstrip().startswith("#"):
                continue
            name = line[i + len('name = "'):].split('"')[0]
            if not name.startswith("_"):
                names.append(name)
        result[pkg] = names
    return result

def _unless_defined(name, **kwargs):
    # A workspace that defined the name first (e.g. an http_archive of the
    # upstream project) keeps its own.
    if not native.existing_rule(name):
        system_library(name = name, **kwargs)

def asyncio_cpp_system_deps(lazy = False):
    """Declares the Debian-backed third-party repositories (asyncio_cpp_deps in deps.bzl calls it)."""
    absl_files = _absl_build_files()
    absl_files["BUILD"] = "# Generated by //third_party:system_libs.bzl.\n"
    _unless_defined(
        name = "com_google_absl",
        build_files = absl_files,
        targets = _targets_of(absl_files),
        required_files = [
            "/usr/include/absl/base/config.h",
            "/usr/include/absl/functional/any_invocable.h",
            "%{LIBDIR}/libabsl_base.so",
        ],
        debian_packages = ["libabsl-dev"],
        lazy = lazy,
    )

    gtest_files = {"BUILD": _GTEST_BUILD}
    _unless_defined(
        name = "com_google_googletest",
        build_files = gtest_files,
        targets = _targets_of(gtest_files),
        required_files = [
            "/usr/include/gtest/gtest.h",
            "/usr/include/gmock/gmock.h",
            "%{LIBDIR}/libgtest.a",
            "%{LIBDIR}/libgtest_main.a",
            "%{LIBDIR}/libgmock.a",
            "%{LIBDIR}/libgmock_main.a",
        ],
        symlinks = {
            "lib/libgtest.a": "%{LIBDIR}/libgtest.a",
            "lib/libgtest_main.a": "%{LIBDIR}/libgtest_main.a",
            "lib/libgmock.a": "%{LIBDIR}/libgmock.a",
            "lib/libgmock_main.a": "%{LIBDIR}/libgmock_main.a",
        },
        debian_packages = ["libgtest-dev", "libgmock-dev"],
        lazy = lazy,
    )

    benchmark_files = {"BUILD": _BENCHMARK_BUILD}
    _unless_defined(
        name = "com_github_google_benchmark",
        build_files = benchmark_files,
        targets = _targets_of(benchmark_files),
        required_files = [
            "/usr/include/benchmark/benchmark.h",
            "%{LIBDIR}/libbenchmark.so",
            "%{LIBDIR}/libbenchmark_main.a",
        ],
        symlinks = {"lib/libbenchmark_main.a": "%{LIBDIR}/libbenchmark_main.a"},
        debian_packages = ["libbenchmark-dev"],
        lazy = lazy,
    )

    cares_files = {"BUILD": _CARES_BUILD}
    _unless_defined(
        name = "com_github_cares_cares",
        build_files = cares_files,
        targets = _targets_of(cares_files),
        required_files = ["/usr/include/ares.h", "%{LIBDIR}/libcares.so"],
        debian_packages = ["libc-ares-dev"],
        lazy = lazy,
    )

    openssl_files = {"BUILD": _OPENSSL_BUILD}
    _unless_defined(
        name = "openssl",
        build_files = openssl_files,
        targets = _targets_of(openssl_files),
        required_files = ["/usr/include/openssl/ssl.h", "%{LIBDIR}/libssl.so", "%{LIBDIR}/libcrypto.so"],
        debian_packages = ["libssl-dev"],
        lazy = lazy,
    )

    # gRPC is not used yet: always lazy, so a missing libgrpc++-dev never
    # breaks loading the workspace.
    grpc_files = {"BUILD": _GRPC_BUILD.replace("%{ABSL_TSAN_SHIM_DEPS}", _ABSL_TSAN_SHIM_DEPS)}
    _unless_defined(
        name = "com_github_grpc_grpc",
        build_files = grpc_files,
        targets = {"": ["grpc++", "grpcpp", "grpc"]},
        required_files = [
            "/usr/include/grpcpp/grpcpp.h",
            "/usr/include/google/protobuf/message.h",
            "/usr/bin/grpc_cpp_plugin",
        ],
        symlinks = {"grpc_cpp_plugin": "/usr/bin/grpc_cpp_plugin"},
        pkg_config = ["grpc++", "protobuf"],
        fallback_linkopts = ["-lgrpc++", "-lgrpc", "-lgpr", "-lprotobuf", "-lpthread"],
        debian_packages = ["libgrpc++-dev", "protobuf-compiler-grpc"],
        lazy = True,
    )
