# SPDX-License-Identifier: GPL-2.0-or-later
# The wall-clock timeout of UcVcpu.run() (included by vmm/_ucvcpu.pyx), enforced by the vCPU itself.
#
# The engine is never given a timeout: for each uc_emu_start with one, Unicorn 2.1.4 starts a thread
# that wakes every 2 us until the entry ends (~25% of a second core during a Linux boot, and a
# thread created and joined per entry, ~130 us).  Instead the clock is read here, at three kinds
# of moment, each cheap where it is frequent:
#
# * every TIMEOUT_CHECK_NS of virtual time: the vCPU's deadline is never later than the next check
#   (the ``deadline`` property folds it into whatever the machine sets), so a guest that only
#   computes, or spins with interrupts disabled (``jmp .``, whose iterations bulk_retire takes up to
#   the deadline), comes to the block hook's attention path at least that often;
# * between engine entries (UcVcpu._run);
# * every TIMEOUT_STILL_EVENTS-th event during which virtual time stands still: an exception
#   delivery (a handler that faults at once, such as a #UD handler that is itself UD2 or a #PF
#   handler on a not-present page with an IST stack, retires nothing while the engine loops through
#   deliveries) and a REP string iteration after the first (the instruction retires once, however
#   many iterations: `rep stosb` with RCX = 2^40 would run for hours).
#
# An expired timeout is a stop request with the text "timeout" (STOPPED, reason "timeout"), made
# only while no other stop is asked for, like any stop request.  Not covered: an engine that loops
# without retiring, delivering or reaching a block hook (none is known).

from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

DEF TIMEOUT_CHECK_NS = 1 << 22      # ~4 M instructions: a few ms of host time at 100-1500 MIPS
DEF TIMEOUT_STILL_EVENTS = 1024    # ~1-5 ms of deliveries, ~30 us of REP iterations


cdef inline double monotonic_s() noexcept nogil:
    """time.monotonic() without the interpreter (the same clock)."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef void arm_timeout(UcVcpu vcpu, double seconds) noexcept:
    """The run about to start ends ``seconds`` from now (0: no timeout)."""
    vcpu.timeout_end = monotonic_s() + seconds if seconds > 0 else 0.0
    vcpu.timeout_check = vcpu.retired + vcpu.c_clock_offset + TIMEOUT_CHECK_NS if seconds > 0 else <uint64_t> -1
    fold_deadline(vcpu)


cdef void disarm_timeout(UcVcpu vcpu) noexcept:
    vcpu.timeout_end = 0.0
    vcpu.timeout_check = <uint64_t> -1
    fold_deadline(vcpu)


cdef inline void fold_deadline(UcVcpu vcpu) noexcept:
    """The vCPU's deadline: the machine's timers' or the next clock check, whichever comes first."""
    vcpu.deadline = min(vcpu.timer_deadline, vcpu.timeout_check)
    vcpu.fold_fast_until()


cdef bint timed_out(UcVcpu vcpu) noexcept:
    """True (and the run asked to stop) if the timeout has expired."""
    if vcpu.timeout_end == 0.0 or monotonic_s() < vcpu.timeout_end:
        return False
    if vcpu.stop_reason == STOP_NONE or vcpu.stop_reason == STOP_YIELD:
        vcpu.stop_reason = STOP_REQUESTED
        vcpu.stop_text = "timeout"
    uc_emu_stop(vcpu.uc)
    return True


cdef void check_timeout(UcVcpu vcpu) noexcept:
    """At the vCPU's attention, after the machine's on_attention (which set the timers' deadline):
    read the clock if a check is due, and keep the deadline no later than the next one."""
    cdef uint64_t now = vcpu.retired + vcpu.c_clock_offset
    if vcpu.timeout_end == 0.0 or now < vcpu.timeout_check:
        return
    timed_out(vcpu)
    vcpu.timeout_check = now + TIMEOUT_CHECK_NS
    fold_deadline(vcpu)


cdef inline bint timed_out_while_still(UcVcpu vcpu) noexcept:
    """An event during which virtual time stands still (see above): True if the timeout, looked at
    every TIMEOUT_STILL_EVENTS-th such event, has expired (the run is then asked to stop)."""
    if vcpu.timeout_end == 0.0:
        return False
    vcpu.still_events += 1
    return vcpu.still_events % TIMEOUT_STILL_EVENTS == 0 and timed_out(vcpu)
