/* tierscan's Valgrind tool "tsw": every data access of the client, at page granularity, as a
   stream of little-endian uint64 words on a file descriptor (--tsw-fd=N).

   Word layout (bits 63..60 are the record type; see src/tierscan/trace/recordwords.py):
     type 0  access:  (vaddr >> 12) << 1 | is_write   (a run of accesses to one page with the
                      same read/write kind is emitted once: the run-merging of the issue)
     type 8  clock:   guest instructions executed so far (low 60 bits), emitted when the count
                      has moved by CLOCK_STEP since the last clock word
     type 9  thread:  the Valgrind thread id that runs from here on (Valgrind serialises threads,
                      so the stream keeps their interleaving)
     type 10 vma:     followed by two words start, end; low bits: kind (1 anon, 2 file, 3 heap,
                      4 stack, 5 shm), from Valgrind's address-space manager at exit, and from
                      every client mmap/brk while it runs
   Loads, stores, guarded loads/stores, dirty helpers' memory effects, CAS and LL/SC are
   instrumented as Valgrind's lackey does, so the two backends see the same accesses. */
#include "pub_tool_basics.h"
#include "pub_tool_tooliface.h"
#include "pub_tool_libcassert.h"
#include "pub_tool_libcprint.h"
#include "pub_tool_libcfile.h"
#include "pub_tool_libcbase.h"
#include "pub_tool_options.h"
#include "pub_tool_machine.h"
#include "pub_tool_aspacemgr.h"
#include "pub_tool_threadstate.h"

#define T_CLOCK  (8ULL << 60)
#define T_THREAD (9ULL << 60)
#define T_VMA    (10ULL << 60)
#define CLOCK_STEP 65536ULL
#define BUF_WORDS 65536

static Int   out_fd = -1;
static ULong buf[BUF_WORDS];
static Int   used = 0;
static ULong last = ~0ULL;          /* last access word emitted (for run merging) */
static ULong icount = 0;            /* guest instructions, bumped per superblock by inline IR */
static ULong clock_mark = 0;

static void flush_buf(void)
{
   HChar* p = (HChar*)buf;
   Int left = used * 8;
   while (left > 0) {
      Int n = VG_(write)(out_fd, p, left);
      if (n <= 0) VG_(tool_panic)("tsw: write to --tsw-fd failed (reader gone?)");
      p += n; left -= n;
   }
   used = 0;
}

static inline void put(ULong w)
{
   if (used == BUF_WORDS) flush_buf();
   buf[used++] = w;
}

static VG_REGPARM(1) void on_load(Addr a)
{
   ULong w = ((ULong)a >> 12) << 1;
   if (w == last || (w | 1) == last) return;      /* a read in a run on this page */
   if (icount - clock_mark >= CLOCK_STEP) { clock_mark = icount; put(T_CLOCK | icount); }
   last = w;
   put(w);
}

static VG_REGPARM(1) void on_store(Addr a)
{
   ULong w = (((ULong)a >> 12) << 1) | 1;
   if (w == last) return;
   if (icount - clock_mark >= CLOCK_STEP) { clock_mark = icount; put(T_CLOCK | icount); }
   last = w;
   put(w);
}

static void put_vma(Addr start, Addr end, ULong kind)
{
   put(T_VMA | kind); put(start); put(end);
}

static Addr stack_hi = 0, stack_lo = 0;     /* the main thread's stack, taken while it lives */

static void on_thread_start(ThreadId tid, ULong blocks_done)
{
   static ThreadId running = 0;
   if (tid == running) return;
   if (tid == 1 && stack_hi == 0) {
      stack_hi = VG_(thread_get_stack_max)(1);
      stack_lo = stack_hi - VG_(thread_get_stack_size)(1);
   }
   running = tid;
   put(T_THREAD | tid);
   last = ~0ULL;
}

static void on_mmap(Addr a, SizeT len, Bool rr, Bool ww, Bool xx, ULong di_handle)
{
   NSegment const* seg = VG_(am_find_nsegment)(a);
   put_vma(a, a + len, (seg && seg->kind == SkFileC) ? 2 : (seg && seg->kind == SkShmC) ? 5 : 1);
}

static void on_brk(Addr a, SizeT len, ThreadId tid)
{
   put_vma(a, a + len, 3);
}

static void dump_segments(void)
{
   Addr starts[4096];
   Int n = VG_(am_get_segment_starts)(SkAnonC | SkFileC | SkShmC, starts, 4096);
   Int i;
   for (i = 0; i < n; i++) {
      NSegment const* s = VG_(am_find_nsegment)(starts[i]);
      ULong kind;
      if (!s) continue;
      if (s->kind == SkFileC) kind = 2;
      else if (s->kind == SkShmC) kind = 5;
      else if (s->isCH) kind = 3;
      else if (s->start < stack_hi && s->end >= stack_lo) kind = 4;
      else kind = 1;
      put_vma(s->start, s->end + 1, kind);
   }
}

/* Valgrind does not run the tool's fini when the client execs a new program (without
   --trace-children it simply execs it natively): flush what was recorded so far first. */
static void pre_syscall(ThreadId tid, UInt sysno, UWord* args, UInt nArgs)
{
   if (sysno == 59 /* execve */ || sysno == 322 /* execveat */) flush_buf();
}

static void post_syscall(ThreadId tid, UInt sysno, UWord* args, UInt nArgs, SysRes res) {}

static Bool process_cmd_line_option(const HChar* arg)
{
   if VG_INT_CLO(arg, "--tsw-fd", out_fd) {}
   else return False;
   return True;
}

static void print_usage(void) { VG_(printf)("    --tsw-fd=<n>   write the access stream to fd n\n"); }
static void print_debug_usage(void) { VG_(printf)("    (none)\n"); }

static void post_clo_init(void)
{
   if (out_fd < 0) VG_(fmsg_bad_option)("--tsw-fd", "tsw needs --tsw-fd=N (an open fd)\n");
}

static void add_call(IRSB* sb, Bool store, IRExpr* addr, IRExpr* guard)
{
   IRDirty* di = unsafeIRDirty_0_N(1, store ? "on_store" : "on_load",
                                   VG_(fnptr_to_fnentry)(store ? (void*)&on_store : (void*)&on_load),
                                   mkIRExprVec_1(addr));
   if (guard) di->guard = guard;
   addStmtToIRSB(sb, IRStmt_Dirty(di));
}

static IRSB* instrument(VgCallbackClosure* closure, IRSB* in, const VexGuestLayout* layout,
                        const VexGuestExtents* vge, const VexArchInfo* archinfo_host,
                        IRType gWordTy, IRType hWordTy)
{
   IRSB* out = deepCopyIRSBExceptStmts(in);
   Int i = 0, ninstr = 0;
   while (i < in->stmts_used && in->stmts[i]->tag != Ist_IMark) addStmtToIRSB(out, in->stmts[i++]);
   for (Int j = i; j < in->stmts_used; j++) if (in->stmts[j]->tag == Ist_IMark) ninstr++;
   /* icount += ninstr, inline (no helper call): the clock costs two IR statements a block */
   {
      IRTemp t1 = newIRTemp(out->tyenv, Ity_I64), t2 = newIRTemp(out->tyenv, Ity_I64);
      IRExpr* at = mkIRExpr_HWord((HWord)&icount);
      addStmtToIRSB(out, IRStmt_WrTmp(t1, IRExpr_Load(Iend_LE, Ity_I64, at)));
      addStmtToIRSB(out, IRStmt_WrTmp(t2, IRExpr_Binop(Iop_Add64, IRExpr_RdTmp(t1),
                                                        IRExpr_Const(IRConst_U64(ninstr)))));
      addStmtToIRSB(out, IRStmt_Store(Iend_LE, at, IRExpr_RdTmp(t2)));
   }
   for (; i < in->stmts_used; i++) {
      IRStmt* st = in->stmts[i];
      if (!st || st->tag == Ist_NoOp) continue;
      switch (st->tag) {
      case Ist_WrTmp:
         if (st->Ist.WrTmp.data->tag == Iex_Load)
            add_call(out, False, st->Ist.WrTmp.data->Iex.Load.addr, NULL);
         break;
      case Ist_Store: add_call(out, True, st->Ist.Store.addr, NULL); break;
      case Ist_StoreG: add_call(out, True, st->Ist.StoreG.details->addr,
                                st->Ist.StoreG.details->guard); break;
      case Ist_LoadG: add_call(out, False, st->Ist.LoadG.details->addr,
                               st->Ist.LoadG.details->guard); break;
      case Ist_Dirty: {
         IRDirty* d = st->Ist.Dirty.details;
         if (d->mFx == Ifx_Read || d->mFx == Ifx_Modify) add_call(out, False, d->mAddr, NULL);
         if (d->mFx == Ifx_Write || d->mFx == Ifx_Modify) add_call(out, True, d->mAddr, NULL);
         break;
      }
      case Ist_CAS:
         add_call(out, False, st->Ist.CAS.details->addr, NULL);
         add_call(out, True, st->Ist.CAS.details->addr, NULL);
         break;
      case Ist_LLSC:
         add_call(out, st->Ist.LLSC.storedata != NULL, st->Ist.LLSC.addr, NULL);
         break;
      default: break;
      }
      addStmtToIRSB(out, st);
   }
   return out;
}

static void fini(Int exitcode)
{
   dump_segments();
   put(T_CLOCK | icount);
   flush_buf();
   VG_(close)(out_fd);
}

static void pre_clo_init(void)
{
   VG_(details_name)("tsw");
   VG_(details_version)("1");
   VG_(details_description)("tierscan page-access recorder");
   VG_(details_copyright_author)("tierscan contributors; GPL-2.0");
   VG_(details_bug_reports_to)("tierscan");
   VG_(basic_tool_funcs)(post_clo_init, instrument, fini);
   VG_(needs_command_line_options)(process_cmd_line_option, print_usage, print_debug_usage);
   VG_(needs_syscall_wrapper)(pre_syscall, post_syscall);
   VG_(track_start_client_code)(on_thread_start);
   VG_(track_new_mem_mmap)(on_mmap);
   VG_(track_new_mem_brk)(on_brk);
}

VG_DETERMINE_INTERFACE_VERSION(pre_clo_init)
