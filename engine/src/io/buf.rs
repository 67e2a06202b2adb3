//! The aligned buffer lines are serialized into: memory aligned for
//! `O_DIRECT`, kept apart from the file it is written to (as glommio keeps
//! its `DmaBuffer` apart from its `DmaFile`).
//!
//! The writer's buffers are [`AlignedBuf::resident`]: backed by transparent
//! huge pages where the kernel allows them, and faulted in when made. A
//! write from huge pages is a few physically contiguous pieces, which the
//! block layer passes on as one request, where 4 KiB pages would be split
//! at the device's segment limit (254 pieces on a virtio disk), each piece
//! of a split write one more request, interrupt and completion.

use std::mem::MaybeUninit;
use std::ptr::NonNull;

use crate::format::LineBuf;

/// A transparent huge page on x86-64 and most aarch64 kernels.
const HUGE_PAGE: usize = 2 << 20;
/// The smallest page: a buffer is faulted in one byte per page.
const PAGE: usize = 4096;

/// A growable byte buffer whose memory is aligned for `O_DIRECT`.
#[derive(Debug)]
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    /// Initialized bytes; in range `0 ..= cap`.
    len: usize,
    cap: usize,
    /// The alignment of writes from this buffer (its padding unit).
    align: usize,
}

// SAFETY: the buffer owns its allocation exclusively, like a `Vec<u8>`.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// An empty buffer of `cap` bytes (rounded up to a huge page), asked to
    /// be backed by transparent huge pages (`madvise(MADV_HUGEPAGE)`; the
    /// kernel's `transparent_hugepage` setting decides) and faulted in now,
    /// so filling it never waits for the kernel. Where huge pages are not
    /// available it is an ordinary buffer, resident all the same.
    pub(crate) fn resident(cap: usize, align: usize) -> AlignedBuf {
        let mut b = AlignedBuf {
            ptr: NonNull::dangling(),
            len: 0,
            cap: 0,
            align,
        };
        b.grow_to(cap.max(align));
        // SAFETY: `ptr .. ptr + cap` is this buffer's own allocation; every
        // byte written is within it and is uninitialized space (len is 0).
        unsafe {
            (0..b.cap)
                .step_by(PAGE)
                .for_each(|i| b.ptr.as_ptr().add(i).write(0))
        };
        b
    }

    fn grow_to(&mut self, want: usize) {
        // The mapping's alignment: a huge page, or `align` if larger.
        let mem_align = HUGE_PAGE.max(self.align);
        let cap = want.next_multiple_of(mem_align);
        let ptr = map(cap, mem_align);
        if self.cap > 0 {
            // SAFETY: both regions are valid for `len` bytes and do not overlap
            // (`ptr` is a fresh mapping); the old one is unmapped whole.
            unsafe {
                std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), ptr.as_ptr(), self.len);
                unmap(self.ptr.as_ptr(), self.cap);
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
            // SAFETY: mapped in `grow_to` with exactly this length; nothing
            // refers to it after the buffer (the output waits for its writes).
            unsafe { unmap(self.ptr.as_ptr(), self.cap) };
        }
    }
}

/// A fresh anonymous mapping of `cap` bytes aligned to `align`, advised to
/// be backed by huge pages. A mapping of its own, not the allocator's memory:
/// the advice stays with the buffer, and no later allocation of the process
/// lands in memory the kernel would collapse into huge pages behind it.
fn map(cap: usize, align: usize) -> NonNull<u8> {
    let len = cap + align;
    // SAFETY: a new private anonymous mapping, placed by the kernel; it
    // aliases nothing.
    let raw = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            len,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::PRIVATE,
        )
    };
    let raw = match raw {
        Ok(p) => p.cast::<u8>(),
        Err(_) => std::alloc::handle_alloc_error(
            std::alloc::Layout::from_size_align(cap, align)
                .unwrap_or(std::alloc::Layout::new::<u8>()),
        ),
    };
    let head = raw.align_offset(align);
    // SAFETY: `head < align`, so `raw + head .. raw + head + cap` lies within
    // the `cap + align` bytes just mapped; the pieces before and after it
    // are whole pages (`align` and `cap` are multiples of the page size)
    // that nothing refers to.
    let ptr = unsafe {
        unmap(raw, head);
        unmap(raw.add(head + cap), align - head);
        raw.add(head)
    };
    // A hint: refused (no THP in this kernel) it changes nothing.
    // SAFETY: `ptr .. ptr + cap` is the mapping kept above; the advice
    // changes only how it is backed, not its contents.
    let _ = unsafe { rustix::mm::madvise(ptr.cast(), cap, rustix::mm::Advice::LinuxHugepage) };
    NonNull::new(ptr).unwrap_or_else(|| unreachable!("mmap never returns address 0 here"))
}

/// Unmaps `len` bytes at `ptr` (nothing when `len` is 0).
///
/// # Safety
/// `ptr .. ptr + len` must be mapped pages of ours that nothing refers to.
unsafe fn unmap(ptr: *mut u8, len: usize) {
    if len > 0 {
        // SAFETY: the caller's contract; a failure (only for bad arguments)
        // leaves the pages mapped, a leak rather than a fault.
        let _ = unsafe { rustix::mm::munmap(ptr.cast(), len) };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Minor page faults of the thread that opened `stat` (its
    /// `/proc/thread-self/stat`) so far, read into the stack: reading into a
    /// new `String` would allocate, and a fresh heap page is a fault of its
    /// own.
    fn minor_faults(stat: &std::fs::File) -> u64 {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 1024];
        let n = stat.read_at(&mut buf, 0).expect("thread stat");
        let text = std::str::from_utf8(&buf[..n]).expect("ASCII");
        // Fields after the command (which may hold spaces) start after ") ".
        text.rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(7))
            .and_then(|v| v.parse().ok())
            .expect("minflt field")
    }

    /// Fills a new resident 4 MiB buffer; returns the page faults it took.
    fn fill_resident(stat: &std::fs::File) -> u64 {
        let mut b = AlignedBuf::resident(4 << 20, 4096);
        let chunk = [7u8; 4096];
        let before = minor_faults(stat);
        while b.len() + chunk.len() <= b.cap {
            b.extend_from_slice(&chunk);
        }
        let faults = minor_faults(stat) - before;
        assert_eq!(b.len(), 4 << 20);
        assert!(b.as_slice().iter().all(|&x| x == 7));
        faults
    }

    #[test]
    fn a_resident_buffer_fills_without_a_page_fault() {
        let stat = std::fs::File::open("/proc/thread-self/stat").expect("thread stat");
        // The kernel may fault a page of a mapping in again on its own (for
        // instance khugepaged collapsing 4 KiB pages into a huge page when
        // huge pages were short at the start; CI has seen a single such
        // fault twice), so one buffer of three must fill with none; a
        // buffer not faulted in ahead takes a fault per page (or per huge
        // page) every time.
        let faults: Vec<u64> = (0..3).map(|_| fill_resident(&stat)).collect();
        assert!(
            faults.contains(&0),
            "filling 4 MiB faulted pages in, each of three buffers: {faults:?}"
        );
    }

    #[test]
    fn a_resident_buffer_is_its_own_mapping_advised_for_huge_pages() {
        let b = AlignedBuf::resident(4 << 20, 4096);
        let at = b.ptr() as usize;
        assert_eq!(at % HUGE_PAGE, 0, "a huge page's alignment");
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        // Each mapping is a line `start-end perms ...` and then its fields.
        let mut flags = None;
        let mut inside = false;
        for line in smaps.lines() {
            let range = line
                .split_once(' ')
                .and_then(|(r, _)| r.split_once('-'))
                .and_then(|(s, e)| {
                    Some((
                        usize::from_str_radix(s, 16).ok()?,
                        usize::from_str_radix(e, 16).ok()?,
                    ))
                });
            if let Some((start, end)) = range {
                inside = start <= at && at + b.cap <= end;
            } else if inside && let Some(f) = line.strip_prefix("VmFlags:") {
                flags = Some(f.split_whitespace().map(str::to_string).collect::<Vec<_>>());
            }
        }
        let flags = flags.expect("a mapping holding the whole buffer");
        // `hg`: MADV_HUGEPAGE was taken, whatever the THP setting; a kernel
        // built without THP (no such directory) refuses the advice.
        let thp = std::path::Path::new("/sys/kernel/mm/transparent_hugepage").is_dir();
        assert_eq!(flags.iter().any(|f| f == "hg"), thp, "VmFlags {flags:?}");
    }
}
