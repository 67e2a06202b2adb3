//! The aligned buffer lines are serialized into: memory aligned for
//! `O_DIRECT`, kept apart from the file it is written to (as glommio keeps
//! its `DmaBuffer` apart from its `DmaFile`).

use std::mem::MaybeUninit;
use std::ptr::NonNull;

use crate::format::LineBuf;

/// A growable byte buffer whose memory is aligned for `O_DIRECT`.
#[derive(Debug)]
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    /// Initialized bytes; in range `0 ..= cap`.
    len: usize,
    cap: usize,
    align: usize,
}

// SAFETY: the buffer owns its allocation exclusively, like a `Vec<u8>`.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// An empty buffer of `cap` bytes (rounded up to `align`).
    pub(crate) fn new(cap: usize, align: usize) -> AlignedBuf {
        let mut b = AlignedBuf {
            ptr: NonNull::dangling(),
            len: 0,
            cap: 0,
            align,
        };
        b.grow_to(cap.max(align));
        b
    }

    fn layout(cap: usize, align: usize) -> std::alloc::Layout {
        // `align` is a power of two (statx alignments go through
        // `next_power_of_two`) and `cap` a multiple of it, far below isize::MAX;
        // a silent fallback layout would free memory with the wrong layout.
        std::alloc::Layout::from_size_align(cap, align)
            .expect("aligned buffer layout: power-of-two alignment, size below isize::MAX")
    }

    fn grow_to(&mut self, want: usize) {
        let cap = want.next_multiple_of(self.align);
        let layout = Self::layout(cap, self.align);
        // SAFETY: `layout` has a non-zero size (at least `align`).
        let raw = unsafe { std::alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        if self.cap > 0 {
            // SAFETY: both regions are valid for `len` bytes and do not overlap
            // (`ptr` is a fresh allocation); the old one is freed with its own layout.
            unsafe {
                std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), ptr.as_ptr(), self.len);
                std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap, self.align));
            }
        }
        self.ptr = ptr;
        self.cap = cap;
    }

    /// Makes room for `extra` more bytes.
    #[inline]
    pub(crate) fn reserve(&mut self, extra: usize) {
        if self.cap - self.len < extra {
            self.grow_to((self.len + extra).max(self.cap * 2));
        }
    }

    /// Appends bytes.
    #[inline]
    pub fn extend_from_slice(&mut self, s: &[u8]) {
        self.reserve(s.len());
        // SAFETY: `reserve` made room for `s.len()` bytes after `len`; `s` is
        // not inside this buffer (we hold `&mut self`).
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), self.ptr.as_ptr().add(self.len), s.len())
        };
        self.len += s.len();
    }

    /// The uninitialized room after the data, at least `n` bytes.
    pub(crate) fn spare(&mut self, n: usize) -> &mut [MaybeUninit<u8>] {
        self.reserve(n);
        // SAFETY: `cap - len` bytes after `len` are allocated and owned by us.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.ptr.as_ptr().add(self.len).cast(),
                self.cap - self.len,
            )
        }
    }

    /// Marks `n` more bytes, written through [`spare`](Self::spare), as data.
    ///
    /// # Safety
    /// The first `n` bytes of the spare room must have been initialized.
    pub(crate) unsafe fn advance(&mut self, n: usize) {
        debug_assert!(self.len + n <= self.cap);
        self.len += n;
    }

    /// Bytes of data.
    pub fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are initialized.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Removes the first `n` bytes, moving the rest to the front.
    pub(super) fn drain_front(&mut self, n: usize) {
        let n = n.min(self.len);
        // SAFETY: both ranges lie within the first `len` initialized bytes;
        // `copy` allows overlap.
        unsafe { std::ptr::copy(self.ptr.as_ptr().add(n), self.ptr.as_ptr(), self.len - n) };
        self.len -= n;
    }

    /// Zero-fills up to the next multiple of the alignment; returns the padded length.
    pub(super) fn pad(&mut self) -> usize {
        let padded = self.len.next_multiple_of(self.align);
        self.reserve(padded - self.len);
        // SAFETY: room for `padded` bytes was reserved just above.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), 0, padded - self.len) };
        padded
    }

    pub(super) fn ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// The alignment of the memory (and of the lengths written from it).
    pub(super) fn align(&self) -> usize {
        self.align
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.cap > 0 {
            // SAFETY: allocated in `grow_to` with exactly this layout.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap, self.align)) };
        }
    }
}

/// Lines are serialized straight into the writer's aligned buffer.
impl LineBuf for AlignedBuf {
    #[inline]
    fn extend_from_slice(&mut self, s: &[u8]) {
        AlignedBuf::extend_from_slice(self, s);
    }
    #[inline]
    fn reserve(&mut self, n: usize) {
        AlignedBuf::reserve(self, n);
    }
    fn append_base64(&mut self, data: &[u8]) {
        let n = base64_simd::STANDARD.encoded_length(data.len());
        let spare = AlignedBuf::spare(self, n);
        let written = base64_simd::STANDARD
            .encode(data, base64_simd::Out::from_uninit_slice(&mut spare[..n]))
            .len();
        // SAFETY: `encode` initialized the first `written` bytes of the spare room.
        unsafe { AlignedBuf::advance(self, written) };
    }
    fn spare(&mut self, n: usize) -> &mut [MaybeUninit<u8>] {
        AlignedBuf::spare(self, n)
    }
    unsafe fn advance(&mut self, n: usize) {
        // SAFETY: passed on from the caller.
        unsafe { AlignedBuf::advance(self, n) };
    }
}
