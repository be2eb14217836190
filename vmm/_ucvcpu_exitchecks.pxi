# SPDX-License-Identifier: GPL-2.0-or-later
# The engine's stop checks inside translation blocks (included by vmm/_ucvcpu.pyx): off, except
# where a stop must take effect before the block goes on.
#
# Unicorn 2.1.4 compiles a call of its helper_check_exit_request after every guest load and store
# and after each instruction's code hooks, so that a stop asked for by a callback ends the block
# right there.  On memory accesses that is a C call, with the guest state written back around it,
# per load and store (on the sieve kernel ~5% of all host instructions).  This layer needs the
# check only after code hooks, so it turns the engine's switch for it on (uc_struct.no_exit_request,
# which the engine reads when it translates a block; meant for ARM's IT blocks) and does the rest
# itself:
#
# * memory accesses carry no check: a stop asked for by an MMIO callback (a device that ends the run,
#   an error) ends the run at the next block boundary, after the rest of its block has run and
#   retired (stop_at_access; an interrupt an MMIO access makes pending was taken there already);
# * code hooks carry none either: this layer's code-hook trampolines end with exit_if_requested(),
#   the engine's own check called where the compiled one would be, which leaves the block when the
#   hook moved RIP (an emulated instruction stepped over, a #DB delivered) or asked for a stop;
#   it does not return then (a longjmp into the engine's loop), so a trampoline that calls it must
#   hold no Python reference, and code hooks after it for the same instruction do not run;
# * code hooks of others need the compiled check for their stops to be immediate: the engine's own
#   instruction counter (run(steps=N)) gets it for the stepping run, a debugger's breakpoints
#   (code hooks added on the engine) while UcVcpu.engine_exit_checks is set (the gdb stub sets it
#   while it has breakpoints).
#
# Each switch drops all translations, so every block is compiled under the setting in force.  The
# check at the start of each block stays (the engine compiles it unconditionally): block-hook stops
# and stops from other threads are unchanged.

DEF UC_PAGE_SIZES = 0x7C0           # uc_struct.target_page_size, target_page_align: checked neighbours
DEF UC_NO_EXIT_REQUEST = 0x7F2      # uc_struct.no_exit_request (a bool); init_done follows it


cdef uint8_t *locate_exit_switch(void *uc) except NULL:
    """uc_struct.no_exit_request of an initialised engine, after checking that its neighbours hold
    what unicorn 2.1.4 keeps there (the page size and mask; init_done set)."""
    cdef char *u = <char*> uc
    cdef uint32_t *sizes = <uint32_t*> (u + UC_PAGE_SIZES)
    cdef uint8_t *switch = <uint8_t*> (u + UC_NO_EXIT_REQUEST)
    if sizes[0] != PAGE_SIZE or sizes[1] != PAGE_SIZE - 1 or switch[0] > 1 or switch[1] != 1:
        raise RuntimeError("unicorn self-test: uc_struct.no_exit_request not where unicorn 2.1.4 keeps it")
    return switch


cdef void set_exit_checks(UcVcpu vcpu, bint on) noexcept:
    """Compile memory accesses and code hooks with the engine's stop check (on) or without it from
    now on; translations made under the other setting are dropped."""
    if (vcpu.no_exit_request[0] == 0) != on:
        vcpu.no_exit_request[0] = 0 if on else 1
        flush_translations(vcpu)


cdef void stop_at_access(UcVcpu vcpu) noexcept:
    """A memory callback's work asked for a stop.  The engine ends the run right after the access,
    rolled back to the access's instruction (checks on), or at the next block boundary once the rest
    of the block has run (off); either way what retired is what lies before RIP then, as at a
    debugger's break (the next block's hook, if it ran, committed nothing of it)."""
    vcpu.stop_mid_block = True
    uc_emu_stop(vcpu.uc)


cdef inline void exit_if_requested(void *uc, uint8_t *no_exit_request) noexcept:
    """The last thing a code-hook trampoline does: leave the translation block now if the hook
    moved RIP or asked for a stop, as the check the engine compiles after code hooks would (which it
    leaves out while no_exit_request is set).  Does not return in that case."""
    if no_exit_request[0]:
        engine_exit_check(uc, 0)


# The scratch engine's test of the switch and of exit_if_requested (self_test): a byte store to an
# MMIO page whose callback asks for a stop, then two INC RBX and HLT.
DEF SCRATCH_CODE = 0x1000
DEF SCRATCH_MMIO = 0x10000
cdef bytes SCRATCH_STORE_INC_INC_HLT = b"\x88\x04\x25\x00\x00\x01\x00\x48\xff\xc3\x48\xff\xc3\xf4"


cdef void _skip_incs(void *uc, uint64_t address, uint32_t size, void *ud) noexcept:
    """A code hook on the first INC that steps over both, as an emulated instruction is stepped over."""
    cdef uint64_t rip = address + 6
    uc_reg_write(uc, REG_RIP, &rip)
    exit_if_requested(uc, <uint8_t*> ud)


cdef object _switch_checks = None


cdef uint64_t _scratch_mmio_read(void *uc, uint64_t offset, unsigned size, void *ud) noexcept:
    return 0


cdef void _scratch_mmio_write(void *uc, uint64_t offset, unsigned size, uint64_t value, void *ud) noexcept:
    """The scratch MMIO page: a store asks for a stop while ``ud`` (a flag) is set."""
    if (<uint8_t*> ud)[0]:
        uc_emu_stop(uc)


cdef tuple exit_switch_behaviour():
    """On a scratch engine, once per process: (1) a store whose MMIO callback asks for a stop ends
    the block at once with the checks on, (2) runs on to the block's end with them off, (3) with
    them off a code hook that moves RIP leaves the block through exit_if_requested."""
    global _switch_checks
    cdef void *uc
    cdef uint8_t *switch
    cdef size_t h = 0
    cdef uint8_t stop_in_mmio = 1
    if _switch_checks is None:
        scratch = ucapi.Engine()
        scratch.mem_map(SCRATCH_CODE, PAGE_SIZE)
        scratch.mem_write(SCRATCH_CODE, SCRATCH_STORE_INC_INC_HLT)
        uc = <void*> <uintptr_t> scratch.handle
        if uc_mmio_map(uc, SCRATCH_MMIO, PAGE_SIZE, <void*> _scratch_mmio_read, NULL, <void*> _scratch_mmio_write,
                       &stop_in_mmio):
            raise RuntimeError("unicorn self-test: uc_mmio_map failed on a scratch engine")
        switch = locate_exit_switch(uc)
        incs = []
        for checks in (True, False, False):
            if len(incs) == 2:
                stop_in_mmio = 0
                uc_hook_add(uc, &h, HOOK_CODE, <void*> _skip_incs, <void*> switch, SCRATCH_CODE + 7,
                            SCRATCH_CODE + 7)
            switch[0] = 0 if checks else 1
            scratch.ctl_remove_cache(SCRATCH_CODE, SCRATCH_CODE + PAGE_SIZE)
            scratch.reg_write(ucapi.UC_X86_REG_RBX, 0)
            scratch.emu_start(SCRATCH_CODE, 0)
            incs.append(scratch.reg_read(ucapi.UC_X86_REG_RBX))
        _switch_checks = (incs[0] == 0, incs[1] == 2, incs[2] == 0)
    return _switch_checks
