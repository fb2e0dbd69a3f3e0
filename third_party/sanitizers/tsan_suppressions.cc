// ThreadSanitizer suppressions for programs that use //executors, which links
// them only under --config=tsan (see executors/BUILD). Two kinds of false
// positives, both from libraries that are not built with -fsanitize=thread:
//
// 1. libstdc++: TSan does not see the atomic reference count of exception
//    objects (std::exception_ptr, __cxa_end_catch). The bridges and the pools
//    do not rely on this: the thread that completes a future hands the
//    outcome on and keeps no reference to it, so an exception is freed on the
//    thread that reads it (exception_handoff_test). What is left is user code
//    that reads an exception after dropping its last reference to the
//    concurrent::Future (`pool.submit(f).result()` on a temporary, caught
//    after the temporary is gone): the completing thread may then drop the
//    last reference, ordered only by the invisible count, and TSan reports
//    a race on the deletion.
//
// 2. Debian's gRPC, protobuf and Abseil (the gRPC bridge of //examples/grpc):
//    their lock-free internals are invisible to TSan, which then reports
//    races between the memcpy/malloc/free calls those libraries make.
//    called_from_lib makes TSan ignore the interceptors called from inside
//    them. gRPC's own header code (instrumented, since it is inlined into our
//    binaries) is ordered by gRPC's invisible core, so reports with a frame
//    of gRPC (grpc::, grpc_core::, grpc_event_engine::, grpc_*) are
//    suppressed: in programs that use gRPC, the code that gRPC's threads run
//    (reactions of the bridge included) is not checked by TSan. Everything
//    else, and every program without gRPC, stays fully checked.
#if defined(__SANITIZE_THREAD__)
extern "C" const char* __tsan_default_suppressions() {
  return
      // 1. libstdc++'s exception reference counts.
      "race:std::__exception_ptr::exception_ptr::_M_release\n"
      "race:__cxa_end_catch\n"
      "race:__cxa_free_exception\n"
      "race:__cxa_free_dependent_exception\n"
      // 2. gRPC, protobuf, and the Abseil libraries gRPC links.
      "called_from_lib:libabsl_bad_optional_access.so\n"
      "called_from_lib:libabsl_bad_variant_access.so\n"
      "called_from_lib:libabsl_base.so\n"
      "called_from_lib:libabsl_city.so\n"
      "called_from_lib:libabsl_civil_time.so\n"
      "called_from_lib:libabsl_cord.so\n"
      "called_from_lib:libabsl_cord_internal.so\n"
      "called_from_lib:libabsl_cordz_functions.so\n"
      "called_from_lib:libabsl_cordz_handle.so\n"
      "called_from_lib:libabsl_cordz_info.so\n"
      "called_from_lib:libabsl_debugging_internal.so\n"
      "called_from_lib:libabsl_demangle_internal.so\n"
      "called_from_lib:libabsl_exponential_biased.so\n"
      "called_from_lib:libabsl_graphcycles_internal.so\n"
      "called_from_lib:libabsl_hash.so\n"
      "called_from_lib:libabsl_hashtablez_sampler.so\n"
      "called_from_lib:libabsl_int128.so\n"
      "called_from_lib:libabsl_log_severity.so\n"
      "called_from_lib:libabsl_low_level_hash.so\n"
      "called_from_lib:libabsl_malloc_internal.so\n"
      "called_from_lib:libabsl_random_distributions.so\n"
      "called_from_lib:libabsl_random_internal_platform.so\n"
      "called_from_lib:libabsl_random_internal_pool_urbg.so\n"
      "called_from_lib:libabsl_random_internal_randen.so\n"
      "called_from_lib:libabsl_random_internal_randen_hwaes.so\n"
      "called_from_lib:libabsl_random_internal_randen_hwaes_impl.so\n"
      "called_from_lib:libabsl_random_internal_randen_slow.so\n"
      "called_from_lib:libabsl_random_internal_seed_material.so\n"
      "called_from_lib:libabsl_random_seed_gen_exception.so\n"
      "called_from_lib:libabsl_random_seed_sequences.so\n"
      "called_from_lib:libabsl_raw_hash_set.so\n"
      "called_from_lib:libabsl_raw_logging_internal.so\n"
      "called_from_lib:libabsl_spinlock_wait.so\n"
      "called_from_lib:libabsl_stacktrace.so\n"
      "called_from_lib:libabsl_status.so\n"
      "called_from_lib:libabsl_statusor.so\n"
      "called_from_lib:libabsl_str_format_internal.so\n"
      "called_from_lib:libabsl_strerror.so\n"
      "called_from_lib:libabsl_strings.so\n"
      "called_from_lib:libabsl_strings_internal.so\n"
      "called_from_lib:libabsl_symbolize.so\n"
      "called_from_lib:libabsl_synchronization.so\n"
      "called_from_lib:libabsl_throw_delegate.so\n"
      "called_from_lib:libabsl_time.so\n"
      "called_from_lib:libabsl_time_zone.so\n"
      "called_from_lib:libaddress_sorting.so\n"
      "called_from_lib:libcares.so\n"
      "called_from_lib:libgrpc.so\n"
      "called_from_lib:libgrpc++.so\n"
      "called_from_lib:libgpr.so\n"
      "called_from_lib:libprotobuf.so\n"
      "called_from_lib:libre2.so\n"
      "called_from_lib:libupb.so\n"
      "thread:libgpr.so\n"  // gRPC's own threads may outlive main()
      "race:libgrpc.so\n"
      "race:libgrpc++.so\n"
      "race:libgpr.so\n"
      "race:^grpc::\n"
      "race:^grpc_\n"
      "race:^absl::debian3::status_internal::\n"
      "race:^absl::debian3::Status::\n"
      "race:^absl::debian3::Cord\n"
      "race:^absl::debian3::inlined_vector_internal::\n";
}
#endif
