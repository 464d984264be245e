// The thread pool of a CPU package: linked into model.so, it runs the kernels' parallel loops instead of TVM's.
//
// Why: TVM's pool hands a parallel loop to its workers through queues they poll with sched_yield(), and the caller
// waits for them the same way. Where a system call costs ~0.45 us (a VM), every parallel kernel pays ~0.65 us to
// start and finish even when it does nothing; a ResNet-style call launches ten. Here the workers and the caller
// poll one generation counter with the CPU's pause instruction, yield only after a while, and sleep on a futex when
// idle for long.
//
// How: LLVM-compiled kernels call TVMBackendParallelLaunch/Barrier through two pointers in model.so
// (__TVMBackendParallelLaunch, __TVMBackendParallelBarrier) that TVM's module loader fills in by looking them up
// with dlsym. model.so is linked with a version script that keeps the two pointers out of its dynamic symbol table,
// so TVM finds nothing to fill, and the constructor below points them at this pool when model.so is loaded.
//
// Semantics follow TVM's pool: num_task 0 means one task per thread, the caller runs task 0, a launch returns once
// every task ended, and TVMBackendParallelBarrier syncs the tasks of one launch. Threads: TVM's own count
// (tvm::runtime::threading::MaxConcurrency, which reads TVM_NUM_THREADS), else TVM_NUM_THREADS, else the CPUs;
// fixed when the first launch starts the workers. A launch from inside a task, or while another thread's launch
// runs, runs its work on the calling thread.
// Written in the C subset of C++ (GCC atomics, pthreads, futex): model.so keeps needing only libc, and no newer
// glibc than before (no TLS, no dlsym, no clock_gettime; pthread_create/join bound to their first versions).

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

// glibc 2.34 moved pthread_create/join into libc under a new version; binding the first versions keeps model.so
// loadable by older glibc (where libpthread, loaded by the TVM runtime, defines them).
#if defined(__x86_64__)
__asm__(".symver pthread_create,pthread_create@GLIBC_2.2.5");
__asm__(".symver pthread_join,pthread_join@GLIBC_2.2.5");
#elif defined(__aarch64__)
__asm__(".symver pthread_create,pthread_create@GLIBC_2.17");
__asm__(".symver pthread_join,pthread_join@GLIBC_2.17");
#elif defined(__arm__)
__asm__(".symver pthread_create,pthread_create@GLIBC_2.4");
__asm__(".symver pthread_join,pthread_join@GLIBC_2.4");
#endif

extern "C" {
typedef struct {
  void* sync_handle;
  int32_t num_task;
} TVMParallelGroupEnv;
typedef int (*FTVMParallelLambda)(int task_id, TVMParallelGroupEnv* penv, void* cdata);
typedef int (*FLaunch)(FTVMParallelLambda flambda, void* cdata, int num_task);
typedef int (*FBarrier)(int task_id, TVMParallelGroupEnv* penv);

// The kernels' context pointers. LLVM defines each (weak, null) in a library whose kernels use it; these weak
// definitions merge with those, and exist where no kernel uses one (never an undefined symbol, which the dynamic
// linker could bind to another library's pointer).
FLaunch __TVMBackendParallelLaunch __attribute__((weak)) = nullptr;
FBarrier __TVMBackendParallelBarrier __attribute__((weak)) = nullptr;
// tvm-ffi's error API (libtvm_ffi.so, loaded before any model.so).
void TVMFFIErrorSetRaisedFromCStr(const char* kind, const char* message) __attribute__((weak));
// TVM's own pool (libtvm_runtime.so), for ANSOR_THREAD_POOL=tvm. Weak: resolved when the runtime is loaded.
int TVMBackendParallelLaunch(FTVMParallelLambda flambda, void* cdata, int num_task) __attribute__((weak));
int TVMBackendParallelBarrier(int task_id, TVMParallelGroupEnv* penv) __attribute__((weak));
}

namespace tvm {
namespace runtime {
namespace threading {
int MaxConcurrency() __attribute__((weak));  // TVM's thread count (TVM_NUM_THREADS, else its default)
}  // namespace threading
}  // namespace runtime
}  // namespace tvm

namespace {

const int kMaxThreads = 256;
const int kStride = 64 / sizeof(int);  // one barrier counter per cache line
// Polls with pause this many times (~0.25 ms on x86, less on ARM), then with sched_yield this many times (~2-7 ms),
// then sleeps on the futex. TVM's workers yield 300000 times (~0.1 s), then sleep. Counts, not a clock: no
// clock_gettime, which older 32-bit glibc keeps in librt.
const unsigned kPauseSpins = 1u << 14;
const unsigned kYieldSpins = 1u << 14;

struct alignas(64) Padded {
  int value;
};

// What a launch hands to the workers, in one cache line: a worker that sees the new generation has the job in the
// same line. (Each line that moves between cores costs a transfer; where the host places two vCPUs far apart, one
// takes ~0.2 us.)
struct alignas(64) Job {
  int generation;  // bumped by each launch (after the fields below); the workers' futex word
  FTVMParallelLambda flambda;
  void* cdata;
  TVMParallelGroupEnv env;
};

struct Pool {
  int threads;  // the caller plus the workers; 0: not started in this process (a forked child starts its own)
  int first_generation;  // the generation when the workers were started: each waits for the next one
  Job job;
  Padded sleepers;    // workers asleep on the futex, or about to be
  Padded busy;        // a launch is running
  Padded failed;      // a task of the current launch returned an error
  Padded stop;        // the library is being unloaded: workers exit
  Padded done[kMaxThreads];  // the last generation each worker finished: only it writes its line, only the caller waits
  pthread_t workers[kMaxThreads];
  int sync[kMaxThreads * kStride];
};

Pool pool;
pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  __asm__ __volatile__("yield" ::: "memory");
#endif
}

// Polls until done() holds: pause first, then sched_yield; with `sleep_on`, then a futex sleep while *sleep_on
// is `seen`.
template <typename Done>
void wait_until(Done done, int* sleep_on, int seen) {
  for (unsigned spin = 0;; ++spin) {
    if (done()) return;
    if (spin < kPauseSpins) {
      cpu_relax();
    } else if (sleep_on == nullptr || spin < kPauseSpins + kYieldSpins) {
      sched_yield();
    } else {
      __atomic_add_fetch(&pool.sleepers.value, 1, __ATOMIC_SEQ_CST);
      if (!done()) syscall(SYS_futex, sleep_on, FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr, 0);
      __atomic_sub_fetch(&pool.sleepers.value, 1, __ATOMIC_SEQ_CST);
      spin = 0;
    }
  }
}

// False if the task failed (its error is raised in this thread).
bool run_task(int task) {
  if (task < pool.job.env.num_task && pool.job.flambda(task, &pool.job.env, pool.job.cdata) != 0) {
    __atomic_store_n(&pool.failed.value, 1, __ATOMIC_RELAXED);
    return false;
  }
  return true;
}

void* worker(void* arg) {
  int id = static_cast<int>(reinterpret_cast<intptr_t>(arg));
  prctl(PR_SET_NAME, "ansor-pool", 0, 0, 0);  // how `top -H` and tests tell this pool's threads
  int seen = pool.first_generation;  // not the counter itself: a launch may already have bumped it
  for (;;) {
    wait_until([&] { return __atomic_load_n(&pool.job.generation, __ATOMIC_ACQUIRE) != seen; },
               &pool.job.generation, seen);
    seen = __atomic_load_n(&pool.job.generation, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(&pool.stop.value, __ATOMIC_ACQUIRE)) return nullptr;
    run_task(id);
    __atomic_store_n(&pool.done[id].value, seen, __ATOMIC_RELEASE);
  }
  return nullptr;
}

int configured_threads() {
  int n = tvm::runtime::threading::MaxConcurrency != nullptr ? tvm::runtime::threading::MaxConcurrency() : 0;
  if (n <= 0) {
    const char* env = getenv("TVM_NUM_THREADS");
    n = env != nullptr ? atoi(env) : 0;
  }
  if (n <= 0) n = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  return n < 1 ? 1 : (n > kMaxThreads ? kMaxThreads : n);
}

// Starts the workers once per process (after a fork, again); with none started, every launch runs inline.
void start() {
  if (__atomic_load_n(&pool.threads, __ATOMIC_ACQUIRE) > 0) return;  // no getpid(): a system call per launch
  pthread_mutex_lock(&start_lock);
  if (pool.threads == 0) {
    int wanted = configured_threads();
    int started = 1;
    pool.first_generation = __atomic_load_n(&pool.job.generation, __ATOMIC_RELAXED);
    // Workers take no signals (they stay with the application's threads).
    sigset_t all, previous;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &previous);  // Linux: the calling thread's mask (pthread_sigmask is glibc 2.32)
    for (int id = 1; id < wanted; ++id) {
      if (pthread_create(&pool.workers[id], nullptr, worker, reinterpret_cast<void*>(static_cast<intptr_t>(id))) != 0) {
        break;
      }
      ++started;
    }
    sigprocmask(SIG_SETMASK, &previous, nullptr);
    // Published last: tasks are only ever given to workers that exist.
    __atomic_store_n(&pool.threads, started, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&start_lock);
}

int run_inline(FTVMParallelLambda flambda, void* cdata) {
  TVMParallelGroupEnv env = {nullptr, 1};
  return flambda(0, &env, cdata);
}

int launch(FTVMParallelLambda flambda, void* cdata, int num_task) {
  // Inline: a single task; no worker; or a launch is running (a launch from one of its tasks, or from another
  // thread). busy stays set while a launch's tasks run, so a nested launch never waits for the pool it is in.
  if (num_task == 1 || __atomic_load_n(&pool.stop.value, __ATOMIC_ACQUIRE)) return run_inline(flambda, cdata);
  start();
  if (pool.threads == 1 ||
      __atomic_exchange_n(&pool.busy.value, 1, __ATOMIC_ACQUIRE) != 0) {
    return run_inline(flambda, cdata);
  }
  // Kernels split their loops by penv->num_task: more tasks than threads is as correct with one per thread.
  if (num_task <= 0 || num_task > pool.threads) num_task = pool.threads;
  pool.job.flambda = flambda;
  pool.job.cdata = cdata;
  pool.job.env.num_task = num_task;
  pool.job.env.sync_handle = pool.sync;
  for (int task = 0; task < num_task; ++task) pool.sync[task * kStride] = 0;  // num_task <= threads <= kMaxThreads
  __atomic_store_n(&pool.failed.value, 0, __ATOMIC_RELAXED);
  int generation = __atomic_add_fetch(&pool.job.generation, 1, __ATOMIC_SEQ_CST);  // publishes the job
  if (__atomic_load_n(&pool.sleepers.value, __ATOMIC_SEQ_CST) > 0) {
    syscall(SYS_futex, &pool.job.generation, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
  }
  bool caller_ok = run_task(0);
  for (int id = 1; id < pool.threads; ++id) {
    wait_until([&] { return __atomic_load_n(&pool.done[id].value, __ATOMIC_ACQUIRE) == generation; }, nullptr, 0);
  }
  int failed = __atomic_load_n(&pool.failed.value, __ATOMIC_RELAXED);
  __atomic_store_n(&pool.busy.value, 0, __ATOMIC_RELEASE);
  if (failed == 0) return 0;
  // The caller's own task failed: its error, raised in this thread, is the one to report. A worker's error stays in
  // the worker's thread: report that one task failed.
  if (caller_ok && TVMFFIErrorSetRaisedFromCStr != nullptr) {
    TVMFFIErrorSetRaisedFromCStr("RuntimeError", "a parallel task of a kernel failed (ansor-build thread pool)");
  }
  return -1;
}

int barrier(int task_id, TVMParallelGroupEnv* penv) {
  int num_task = penv->num_task;
  if (num_task <= 1) return 0;
  int* sync = static_cast<int*>(penv->sync_handle);
  int old = __atomic_fetch_add(&sync[task_id * kStride], 1, __ATOMIC_RELEASE);
  for (int task = 0; task < num_task; ++task) {
    if (task == task_id) continue;
    wait_until([&] { return __atomic_load_n(&sync[task * kStride], __ATOMIC_RELAXED) > old; }, nullptr, 0);
  }
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  return 0;
}

void forked_child() {
  // The workers did not survive the fork: start new ones at the next launch. (A fork from inside a task: the
  // child's launch already ran; nothing waits for the parent's workers.)
  pool.threads = 0;
  __atomic_store_n(&pool.busy.value, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&pool.sleepers.value, 0, __ATOMIC_RELAXED);
  pthread_mutex_init(&start_lock, nullptr);
}

// At dlclose (TVM unloads model.so when its last module is freed) and at exit: the workers run this library's
// code, so they end before it is unmapped.
__attribute__((destructor)) void uninstall() {
  int threads = __atomic_load_n(&pool.threads, __ATOMIC_ACQUIRE);
  if (threads <= 1) return;
  __atomic_store_n(&pool.stop.value, 1, __ATOMIC_SEQ_CST);
  __atomic_add_fetch(&pool.job.generation, 1, __ATOMIC_SEQ_CST);
  syscall(SYS_futex, &pool.job.generation, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
  for (int id = 1; id < threads; ++id) pthread_join(pool.workers[id], nullptr);
  // pool.threads stays: `stop` is for good, and a launch after this (a thread still running the model at exit)
  // runs inline.
}

__attribute__((constructor)) void install() {
  const char* choice = getenv("ANSOR_THREAD_POOL");
  if (choice != nullptr && choice[0] == 't' && choice[1] == 'v' && choice[2] == 'm' && choice[3] == 0 &&
      TVMBackendParallelLaunch != nullptr && TVMBackendParallelBarrier != nullptr) {
    // ANSOR_THREAD_POOL=tvm: TVM's own pool, for comparison.
    __TVMBackendParallelLaunch = TVMBackendParallelLaunch;
    __TVMBackendParallelBarrier = TVMBackendParallelBarrier;
    return;
  }
  pthread_atfork(nullptr, nullptr, forked_child);
  __TVMBackendParallelLaunch = launch;
  __TVMBackendParallelBarrier = barrier;
}

}  // namespace
