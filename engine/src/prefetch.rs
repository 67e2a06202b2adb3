//! Read prefetches: hints that a stage will soon read memory that is in no
//! cache yet (the ring's producer before it stores, where the CPU has no
//! write prefetch; the serializer ahead of the bodies it reads).

/// Asks for the cache line holding `p` to be brought in for reading. A hint,
/// never a load: it cannot fault, whatever `p` points at (past the end of a
/// slice, say). Nothing where the CPU is not x86-64.
#[inline(always)]
pub(crate) fn read(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints; it never faults, whatever the address,
    // and reads nothing the program sees.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`read`] for every cache line of `s`.
#[inline]
pub(crate) fn read_lines(s: &[u8]) {
    for line in s.chunks(64) {
        read(line.as_ptr());
    }
}
