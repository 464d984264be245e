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
// (tvm::runtime::threading::MaxConcurrency, which reads TVM_NUM_THREADS), else TVM_NUM_THREADS, else the CPUs.
// A launch from inside a task, or while another thread's launch runs, runs its work on the calling thread.
// Written in the C subset of C++ (GCC atomics, pthreads, futex): model.so keeps needing only libc.

#include <dlfcn.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

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
}

namespace {

const int kMaxThreads = 256;
const int kStride = 64 / sizeof(int);  // one barrier counter per cache line
const long kPauseNs = 50 * 1000;       // poll with pause this long, then with sched_yield
const long kYieldNs = 20 * 1000 * 1000;  // then sleep on the futex (TVM's workers yield ~100 ms, then sleep)

struct alignas(64) Padded {
  int value;
};

struct Pool {
  int threads;  // the caller plus the workers; 0: not started in this process (a forked child starts its own)
  int first_generation;  // the generation when the workers were started: each waits for the next one
  Padded generation;  // bumped by each launch; the workers' futex word
  Padded pending;     // workers still running the current launch
  Padded sleepers;    // workers asleep on the futex, or about to be
  Padded busy;        // a launch is running
  Padded failed;      // a task of the current launch returned an error
  Padded stop;        // the library is being unloaded: workers exit
  pthread_t workers[kMaxThreads];
  FTVMParallelLambda flambda;
  void* cdata;
  TVMParallelGroupEnv env;
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

inline long now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

// Polls until done() holds: pause first, then sched_yield; with `sleep_on`, a futex sleep after kYieldNs.
template <typename Done>
void wait_until(Done done, int* sleep_on, int seen) {
  long start = 0;
  for (unsigned spin = 0;; ++spin) {
    if (done()) return;
    if ((spin & 63) != 63) {
      cpu_relax();
      continue;
    }
    long t = now_ns();
    if (start == 0) start = t;
    if (t - start < kPauseNs) continue;
    if (sleep_on == nullptr || t - start < kYieldNs) {
      sched_yield();
      continue;
    }
    __atomic_add_fetch(&pool.sleepers.value, 1, __ATOMIC_SEQ_CST);
    if (!done()) syscall(SYS_futex, sleep_on, FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr, 0);
    __atomic_sub_fetch(&pool.sleepers.value, 1, __ATOMIC_SEQ_CST);
    start = 0;
  }
}

void run_tasks(int first) {
  int num_task = pool.env.num_task;
  for (int task = first; task < num_task; task += pool.threads) {
    if (pool.flambda(task, &pool.env, pool.cdata) != 0) __atomic_store_n(&pool.failed.value, 1, __ATOMIC_RELAXED);
  }
}

void* worker(void* arg) {
  int id = static_cast<int>(reinterpret_cast<intptr_t>(arg));
  pthread_setname_np(pthread_self(), "ansor-pool");  // how `top -H` and tests tell this pool's threads
  int seen = pool.first_generation;  // not the counter itself: a launch may already have bumped it
  for (;;) {
    wait_until([&] { return __atomic_load_n(&pool.generation.value, __ATOMIC_ACQUIRE) != seen; },
               &pool.generation.value, seen);
    seen = __atomic_load_n(&pool.generation.value, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(&pool.stop.value, __ATOMIC_ACQUIRE)) return nullptr;
    run_tasks(id);
    __atomic_sub_fetch(&pool.pending.value, 1, __ATOMIC_RELEASE);
  }
  return nullptr;
}

int configured_threads() {
  typedef int (*FMaxConcurrency)();
  FMaxConcurrency tvm_threads =
      reinterpret_cast<FMaxConcurrency>(dlsym(RTLD_DEFAULT, "_ZN3tvm7runtime9threading14MaxConcurrencyEv"));
  int n = tvm_threads != nullptr ? tvm_threads() : 0;
  if (n <= 0) {
    const char* env = getenv("TVM_NUM_THREADS");
    n = env != nullptr ? atoi(env) : 0;
  }
  if (n <= 0) n = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  return n < 1 ? 1 : (n > kMaxThreads ? kMaxThreads : n);
}

// Starts the workers once per process; false if none could be started (every launch then runs inline).
void start() {
  if (__atomic_load_n(&pool.threads, __ATOMIC_ACQUIRE) > 0) return;  // no getpid(): a system call per launch
  pthread_mutex_lock(&start_lock);
  if (pool.threads == 0) {
    int wanted = configured_threads();
    int started = 1;
    pool.first_generation = __atomic_load_n(&pool.generation.value, __ATOMIC_RELAXED);
    for (int id = 1; id < wanted; ++id) {
      if (pthread_create(&pool.workers[id], nullptr, worker, reinterpret_cast<void*>(static_cast<intptr_t>(id))) != 0) {
        break;
      }
      ++started;
    }
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
  if (num_task == 1) return run_inline(flambda, cdata);
  start();
  if (pool.threads == 1 ||
      __atomic_exchange_n(&pool.busy.value, 1, __ATOMIC_ACQUIRE) != 0) {
    return run_inline(flambda, cdata);
  }
  if (num_task <= 0) num_task = pool.threads;
  pool.flambda = flambda;
  pool.cdata = cdata;
  pool.env.num_task = num_task;
  pool.env.sync_handle = pool.sync;
  for (int task = 0; task < num_task && task < kMaxThreads; ++task) pool.sync[task * kStride] = 0;
  __atomic_store_n(&pool.failed.value, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&pool.pending.value, pool.threads - 1, __ATOMIC_RELAXED);
  __atomic_add_fetch(&pool.generation.value, 1, __ATOMIC_SEQ_CST);  // publishes the job
  if (__atomic_load_n(&pool.sleepers.value, __ATOMIC_SEQ_CST) > 0) {
    syscall(SYS_futex, &pool.generation.value, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
  }
  run_tasks(0);
  wait_until([] { return __atomic_load_n(&pool.pending.value, __ATOMIC_ACQUIRE) == 0; }, nullptr, 0);
  int failed = __atomic_load_n(&pool.failed.value, __ATOMIC_RELAXED);
  __atomic_store_n(&pool.busy.value, 0, __ATOMIC_RELEASE);
  if (failed == 0) return 0;
  if (TVMFFIErrorSetRaisedFromCStr != nullptr) {
    TVMFFIErrorSetRaisedFromCStr("RuntimeError", "a parallel task of a kernel failed (ansor-build thread pool)");
  }
  return -1;
}

int barrier(int task_id, TVMParallelGroupEnv* penv) {
  int num_task = penv->num_task;
  if (num_task <= 1) return 0;
  if (num_task > pool.threads) {  // tasks run in turns on fewer threads: they cannot wait for each other
    if (TVMFFIErrorSetRaisedFromCStr != nullptr) {
      TVMFFIErrorSetRaisedFromCStr("RuntimeError", "a kernel synchronises more parallel tasks than threads");
    }
    return -1;
  }
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
  // The workers did not survive the fork: start new ones at the next launch.
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
  __atomic_add_fetch(&pool.generation.value, 1, __ATOMIC_SEQ_CST);
  syscall(SYS_futex, &pool.generation.value, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
  for (int id = 1; id < threads; ++id) pthread_join(pool.workers[id], nullptr);
  pool.threads = 0;
}

__attribute__((constructor)) void install() {
  const char* choice = getenv("ANSOR_THREAD_POOL");
  if (choice != nullptr && choice[0] == 't' && choice[1] == 'v' && choice[2] == 'm' && choice[3] == 0) {
    // ANSOR_THREAD_POOL=tvm: TVM's own pool (libtvm_runtime, loaded before any model.so), for comparison.
    FLaunch tvm_launch = reinterpret_cast<FLaunch>(dlsym(RTLD_DEFAULT, "TVMBackendParallelLaunch"));
    FBarrier tvm_barrier = reinterpret_cast<FBarrier>(dlsym(RTLD_DEFAULT, "TVMBackendParallelBarrier"));
    if (tvm_launch != nullptr && tvm_barrier != nullptr) {
      __TVMBackendParallelLaunch = tvm_launch;
      __TVMBackendParallelBarrier = tvm_barrier;
      return;
    }
  }
  pthread_atfork(nullptr, nullptr, forked_child);
  __TVMBackendParallelLaunch = launch;
  __TVMBackendParallelBarrier = barrier;
}

}  // namespace
