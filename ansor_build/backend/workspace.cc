// The workspace allocator of a CPU package: linked into model.so, it gives the kernels their scratch buffers
// instead of TVM's workspace pool.
//
// Why: a tuned kernel's scratch buffers (a padded input tile, an accumulator tile) are allocated and freed inside
// its parallel loop, once per iteration: a ResNet-style convolution makes 64 allocations per call. TVM's pool
// finds each thread's pool through thread-local storage and keeps sorted free lists: about 2.5% of a ResNet-style
// call on one thread went to TVMBackendAllocWorkspace/FreeWorkspace (perf). Here each thread has one arena, and an
// allocation is a bump of its top.
//
// How: as with the thread pool (parallel_pool.cc), the kernels call TVMBackendAllocWorkspace/FreeWorkspace through
// two pointers in model.so that TVM's loader fills in; the link's version script hides them from the loader, and
// the constructor below points them here. Kernels free their buffers in the reverse order of allocation (TVM's
// codegen nests them); a free out of that order is kept until the buffers above it are freed.
//
// An arena that ran out of room serves the allocation from the heap and grows to what the thread needed at its
// next empty moment: after the first call of a model, no allocation reaches malloc. A thread's arena is freed when
// the thread ends. Non-CPU allocations go to TVM's pool. Written in the C subset of C++ (see parallel_pool.cc):
// libc only, no newer glibc than the kernels need.

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

// glibc 2.34 moved the pthread_key functions into libc under new versions (see parallel_pool.cc).
#if defined(__x86_64__)
#define ANSOR_GLIBC_BASE "GLIBC_2.2.5"
#elif defined(__aarch64__)
#define ANSOR_GLIBC_BASE "GLIBC_2.17"
#elif defined(__arm__)
#define ANSOR_GLIBC_BASE "GLIBC_2.4"
#endif
#ifdef ANSOR_GLIBC_BASE
__asm__(".symver pthread_key_create,pthread_key_create@" ANSOR_GLIBC_BASE);
__asm__(".symver pthread_key_delete,pthread_key_delete@" ANSOR_GLIBC_BASE);
__asm__(".symver pthread_getspecific,pthread_getspecific@" ANSOR_GLIBC_BASE);
__asm__(".symver pthread_setspecific,pthread_setspecific@" ANSOR_GLIBC_BASE);
#endif

extern "C" {
typedef void* (*FAlloc)(int device_type, int device_id, uint64_t nbytes, int dtype_code_hint, int dtype_bits_hint);
typedef int (*FFree)(int device_type, int device_id, void* ptr);

// The kernels' pointers (weak definitions merge with LLVM's; see parallel_pool.cc).
FAlloc __TVMBackendAllocWorkspace __attribute__((weak)) = nullptr;
FFree __TVMBackendFreeWorkspace __attribute__((weak)) = nullptr;
// What this allocator served in this process: out[0] allocations from arenas, out[1] from the heap (an arena
// without room, or more than kMaxDepth buffers at once), out[2] arena growths. All zero with ANSOR_WORKSPACE=tvm.
// Exported for diagnostics and tests (ctypes can call it on a loaded model.so).
void ansor_workspace_stats(uint64_t out[3]);
// TVM's own workspace pool (libtvm_runtime.so): non-CPU devices, and ANSOR_WORKSPACE=tvm.
void* TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int dtype_code_hint,
                               int dtype_bits_hint) __attribute__((weak));
int TVMBackendFreeWorkspace(int device_type, int device_id, void* ptr) __attribute__((weak));
}

namespace {

const int kCPU = 1;               // kDLCPU
const uint64_t kAlign = 64;       // TVM's kTempAllocaAlignment: kernels may assume it
const uint64_t kGrain = 4096;     // arena sizes are multiples of a page
const int kMaxDepth = 64;         // buffers live at once in one thread (kernels nest a handful)

struct Entry {
  char* ptr;
  uint64_t top;  // the arena's top before this allocation
  bool heap;     // served by malloc (the arena had no room)
  bool freed;    // freed out of order: popped once the entries above it are
};

struct Arena {
  char* base;
  uint64_t capacity;
  uint64_t top;
  uint64_t wanted;  // the most this thread had allocated at once: the capacity at its next empty moment
  int depth;
  Entry stack[kMaxDepth];
};

uint64_t stats[3];  // see ansor_workspace_stats (relaxed atomic increments)

inline void count(int which) { __atomic_add_fetch(&stats[which], 1, __ATOMIC_RELAXED); }

pthread_key_t key;
// 0: not installed (TVM's pool serves); 1: arenas; 2: unloading or exiting. Once stopped, allocations come from the
// heap and frees free nothing: the key is gone, and a thread still running a kernel at exit may free a buffer of
// its arena.
int state = 0;

void free_arena(void* data) {
  Arena* arena = static_cast<Arena*>(data);
  free(arena->base);
  free(arena);
}

Arena* this_thread() {
  Arena* arena = static_cast<Arena*>(pthread_getspecific(key));
  if (arena == nullptr) {
    arena = static_cast<Arena*>(calloc(1, sizeof(Arena)));
    if (arena == nullptr || pthread_setspecific(key, arena) != 0) {
      free(arena);
      return nullptr;
    }
  }
  return arena;
}

void* heap_alloc(uint64_t nbytes) {
  void* ptr = nullptr;
  count(1);
  return posix_memalign(&ptr, kAlign, nbytes) == 0 ? ptr : nullptr;
}

void* alloc(int device_type, int device_id, uint64_t nbytes, int code_hint, int bits_hint) {
  if (device_type != kCPU) return TVMBackendAllocWorkspace(device_type, device_id, nbytes, code_hint, bits_hint);
  nbytes = (nbytes + kAlign - 1) / kAlign * kAlign;
  if (nbytes == 0) nbytes = kAlign;
  if (__atomic_load_n(&state, __ATOMIC_ACQUIRE) != 1) return heap_alloc(nbytes);
  Arena* arena = this_thread();
  if (arena == nullptr) return nullptr;
  if (arena->depth == kMaxDepth) return heap_alloc(nbytes);  // not on the stack: free() finds it nowhere
  Entry& entry = arena->stack[arena->depth];
  entry.top = arena->top;
  entry.freed = false;
  uint64_t end = arena->top + nbytes;
  if (end > arena->wanted) arena->wanted = end;
  if (end <= arena->capacity) {
    entry.ptr = arena->base + arena->top;
    entry.heap = false;
    arena->top = end;
    count(0);
  } else {
    entry.ptr = static_cast<char*>(heap_alloc(nbytes));
    entry.heap = true;
    if (entry.ptr == nullptr) return nullptr;
    arena->top = end;  // as if in the arena: the sizes above it count towards `wanted`
  }
  ++arena->depth;
  return entry.ptr;
}

// An empty arena grows to what its thread needed (one malloc per growth; none once a model ran once).
void regrow(Arena* arena) {
  if (arena->wanted <= arena->capacity) return;
  uint64_t capacity = (arena->wanted + kGrain - 1) / kGrain * kGrain;
  void* fresh = nullptr;
  if (posix_memalign(&fresh, kAlign, capacity) != 0) return;  // keep the old arena; what does not fit: the heap
  char* base = static_cast<char*>(fresh);
  count(2);
  free(arena->base);
  arena->base = base;
  arena->capacity = capacity;
}

int release(int device_type, int device_id, void* ptr) {
  if (device_type != kCPU) return TVMBackendFreeWorkspace(device_type, device_id, ptr);
  if (__atomic_load_n(&state, __ATOMIC_ACQUIRE) != 1) return 0;
  Arena* arena = static_cast<Arena*>(pthread_getspecific(key));
  int index = arena == nullptr ? -1 : arena->depth - 1;
  while (index >= 0 && arena->stack[index].ptr != ptr) --index;
  if (index < 0) {  // allocated past kMaxDepth
    free(ptr);
    return 0;
  }
  Entry& entry = arena->stack[index];
  if (entry.heap) {
    free(entry.ptr);
    entry.heap = false;
  }
  entry.freed = true;
  while (arena->depth > 0 && arena->stack[arena->depth - 1].freed) {
    --arena->depth;
    arena->top = arena->stack[arena->depth].top;
  }
  if (arena->depth == 0) regrow(arena);
  return 0;
}

__attribute__((constructor)) void install() {
  const char* choice = getenv("ANSOR_WORKSPACE");
  bool tvm = choice != nullptr && choice[0] == 't' && choice[1] == 'v' && choice[2] == 'm' && choice[3] == 0;
  if (tvm && TVMBackendAllocWorkspace != nullptr && TVMBackendFreeWorkspace != nullptr) {
    // ANSOR_WORKSPACE=tvm: TVM's own pool, for comparison.
    __TVMBackendAllocWorkspace = TVMBackendAllocWorkspace;
    __TVMBackendFreeWorkspace = TVMBackendFreeWorkspace;
    return;
  }
  if (pthread_key_create(&key, free_arena) != 0) {
    __TVMBackendAllocWorkspace = TVMBackendAllocWorkspace;  // no key: TVM's pool
    __TVMBackendFreeWorkspace = TVMBackendFreeWorkspace;
    return;
  }
  state = 1;
  __TVMBackendAllocWorkspace = alloc;
  __TVMBackendFreeWorkspace = release;
}

// At dlclose and exit: a thread that ends later must not run free_arena, which is unmapped with this library. The
// arenas of threads still alive stay allocated.
__attribute__((destructor)) void uninstall() {
  if (__atomic_exchange_n(&state, 2, __ATOMIC_ACQ_REL) != 1) return;
  pthread_key_delete(key);
}

}  // namespace

extern "C" void ansor_workspace_stats(uint64_t out[3]) {
  for (int i = 0; i < 3; ++i) out[i] = __atomic_load_n(&stats[i], __ATOMIC_RELAXED);
}
