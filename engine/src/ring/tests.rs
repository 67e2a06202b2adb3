//! The ring's unit tests: round trips, a full ring, wrap-around, the warm
//! restart, refusals and many producers.

use std::sync::atomic::Ordering;

use super::*;

/// Pushes `r` with its own size.
fn push(w: &Producer, r: &RecordParts) -> bool {
    w.try_push(r, r.size())
}

fn rec<'a>(data: &'a [u8], id: Option<&'a str>, t: u64) -> RecordParts<'a> {
    RecordParts {
        input: Some(Payload::new("text/csv", data)),
        output: Some(Payload::new("application/json", b"{}")),
        inference_id: id,
        stamp: t,
        held: [None, None],
    }
}

/// (input data, inference id, time) of a popped record.
type Owned = (Vec<u8>, Option<String>, u64);

fn pop_owned(r: &mut Consumer) -> (Pop, Option<Owned>) {
    let mut got = None;
    let p = r.pop(|parts| {
        got = Some((
            parts.input.unwrap().data.to_vec(),
            parts.inference_id.map(str::to_string),
            parts.stamp,
        ))
    });
    (p, got)
}

#[test]
fn round_trips_every_field() {
    let (w, mut r) = ring(1024);
    assert!(push(
        &w,
        &RecordParts {
            input: None,
            output: Some(Payload::new("text/csv; charset=utf-8", b"0.5")),
            inference_id: Some("id-7"),
            stamp: 42,
            held: [None, None],
        }
    ));
    let mut seen = false;
    assert_eq!(
        r.pop(|p| {
            assert!(p.input.is_none());
            let out = p.output.unwrap();
            assert_eq!(out.content_type, "text/csv; charset=utf-8");
            assert_eq!(out.data, b"0.5");
            assert_eq!(p.inference_id, Some("id-7"));
            assert_eq!(p.stamp, 42);
            seen = true;
        }),
        Pop::Record
    );
    assert!(seen);
    assert_eq!(r.pop(|_| {}), Pop::Empty);
    w.close();
    assert_eq!(r.pop(|_| {}), Pop::Closed);
}

#[test]
fn full_ring_refuses_and_recovers() {
    let (w, mut r) = ring(256);
    let data = [7u8; 40];
    let mut pushed = 0;
    while push(&w, &rec(&data, None, pushed)) {
        pushed += 1;
    }
    assert!(pushed >= 2, "{pushed}");
    for i in 0..pushed {
        let (p, got) = pop_owned(&mut r);
        assert_eq!(p, Pop::Record);
        assert_eq!(got.unwrap().2, i, "FIFO");
    }
    assert_eq!(r.pop(|_| {}), Pop::Empty);
    assert!(
        push(&w, &rec(&data, None, 99)),
        "room again after the consumer freed it"
    );
}

#[test]
fn wraps_around_with_padding_many_times() {
    let (w, mut r) = ring(512);
    for i in 0..10_000u64 {
        let n = (i * 37 % 150) as usize;
        let data: Vec<u8> = (0..n).map(|k| (k as u64 + i) as u8).collect();
        let id = format!("id{i}");
        // The consumer keeps up; a push may still need one retry when only
        // the end-of-buffer padding fit.
        let mut ok = push(&w, &rec(&data, Some(&id), i));
        if !ok {
            assert_eq!(pop_owned(&mut r).0, Pop::Empty);
            ok = push(&w, &rec(&data, Some(&id), i));
        }
        assert!(ok, "push {i}");
        let (p, got) = pop_owned(&mut r);
        assert_eq!(p, Pop::Record);
        let (d, got_id, t) = got.unwrap();
        assert_eq!((d, got_id.as_deref(), t), (data, Some(id.as_str()), i));
    }
}

#[test]
fn an_empty_ring_rewinds_to_its_warm_start() {
    let (w, mut r) = ring(1 << 20); // warm window: 128 KiB
    let data = [3u8; 1000];
    for i in 0..200 {
        assert!(push(&w, &rec(&data, None, i)));
    }
    while r.pop(|_| {}) == Pop::Record {}
    // The consumer found it empty past the window: both ends moved to the next lap's start.
    let tail = w.shared.claim.0.tail.load(Ordering::Relaxed);
    assert_eq!(tail, 1 << 20);
    assert_eq!(w.shared.head.0.load(Ordering::Relaxed), tail);
    assert!(push(&w, &rec(&data, None, 7)));
    assert_eq!(pop_owned(&mut r).1.unwrap().2, 7);
}

#[test]
fn records_in_the_cold_half_round_trip_byte_for_byte() {
    // A 16 KiB ring streams records of 2 KiB or more from offset 8192 on:
    // fill it to the brim again and again, with pieces of lengths spread
    // over 0 to 1500, so records of both kinds of copy, pieces at many
    // offsets within a line and wrap-around padding all come back exactly.
    let (w, mut r) = ring(16384);
    assert_eq!((w.shared.cold, w.shared.stream_min), (8192, 2048));
    let bytes: Vec<u8> = (0..4096u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let cts = ["", "a", "text/csv", "application/json; charset=utf-8"];
    let ids = [
        None,
        Some("7"),
        Some("an-inference-id-of-thirty-seven-bytes"),
    ];
    let mut n = 0u64;
    let mut cold = 0;
    for round in 0..400usize {
        let mut sent = Vec::new();
        loop {
            let k = sent.len() + round;
            let (a, b) = (k * 13 % 1501, (k * 37 + round) % 1501);
            let parts = RecordParts {
                input: (k % 5 != 0).then(|| Payload::new(cts[k % 4], &bytes[k % 1000..][..a])),
                output: (k % 7 != 0).then(|| Payload::new(cts[(k / 4) % 4], &bytes[a..a + b])),
                inference_id: ids[k % 3],
                stamp: n,
                held: [None, None],
            };
            let need = footprint(parts.size());
            let tail = w.shared.claim.0.tail.load(Ordering::Relaxed) & 16383;
            // Where the record lands: after padding, at 0, if it does not fit.
            let start = if tail + need > 16384 { 0 } else { tail };
            if !push(&w, &parts) {
                break;
            }
            cold += usize::from(start >= 8192 && need >= 2048);
            n += 1;
            sent.push(parts);
        }
        assert!(sent.len() > 2, "round {round}: only {} fit", sent.len());
        for want in sent {
            let mut got = None;
            while got.is_none() {
                assert_ne!(r.pop(|p| got = Some(format!("{p:?}"))), Pop::Empty);
            }
            assert_eq!(got.unwrap(), format!("{want:?}"));
        }
    }
    assert!(cold > 100, "only {cold} records were streamed");
}

#[test]
fn too_big_for_the_ring_is_refused() {
    let (w, _r) = ring(128);
    assert!(!push(&w, &rec(&[0u8; 200], None, 0)));
}

#[test]
fn a_large_record_is_never_starved_by_padding() {
    // Records bigger than half the ring: each must wait for the buffer
    // start, which the padding claim makes reachable.
    let (w, mut r) = ring(1024);
    let big = [1u8; 600];
    assert!(push(&w, &rec(&[0u8; 100], None, 0)));
    assert_eq!(pop_owned(&mut r).0, Pop::Record);
    for i in 1..50 {
        let mut tries = 0;
        while !push(&w, &rec(&big, None, i)) {
            assert_eq!(pop_owned(&mut r).0, Pop::Empty);
            tries += 1;
            assert!(tries < 3, "record {i} starved");
        }
        let (p, got) = pop_owned(&mut r);
        assert_eq!(p, Pop::Record);
        assert_eq!(got.unwrap().2, i);
    }
}

#[test]
fn many_producers_one_consumer_lose_and_duplicate_nothing() {
    let (w, mut r) = ring(4096);
    let producers = 4;
    let per = 20_000u64;
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let w = w.clone();
            std::thread::spawn(move || {
                let mut dropped = 0u64;
                for i in 0..per {
                    let payload = (p * per + i).to_le_bytes();
                    while !push(&w, &rec(&payload, None, p)) {
                        dropped += 1;
                        std::thread::yield_now();
                    }
                }
                dropped
            })
        })
        .collect();
    let mut seen = vec![false; (producers * per) as usize];
    let mut last = vec![None::<u64>; producers as usize];
    let mut count = 0;
    while count < producers * per {
        let mut got = None;
        if r.pop(|p| {
            let mut b = [0u8; 8];
            b.copy_from_slice(p.input.unwrap().data);
            got = Some((p.stamp, u64::from_le_bytes(b)));
        }) == Pop::Record
        {
            let (producer, v) = got.unwrap();
            assert!(!seen[v as usize], "duplicate {v}");
            seen[v as usize] = true;
            // Each producer's records arrive in its own order.
            assert!(last[producer as usize].is_none_or(|l| l < v));
            last[producer as usize] = Some(v);
            count += 1;
        } else {
            std::thread::yield_now();
        }
    }
    for h in handles {
        h.join().unwrap();
    }
    assert!(seen.iter().all(|s| *s));
}

#[test]
fn prefetch_stays_in_released_space_and_out_of_streamed_records() {
    // 8 MiB: warm window 256 KiB, cold from 1 MiB, streamed from 8 KiB.
    let (w, _r) = ring(8 << 20);
    let s = &*w.shared;
    // As much as the record took, if it took at most PREFETCH_MAX.
    assert_eq!(s.prefetch_span(4096, 2112, 0), (4096, 2112));
    assert_eq!(s.prefetch_span(4096, PREFETCH_MAX, 0), (4096, PREFETCH_MAX));
    assert_eq!(s.prefetch_span(4096, PREFETCH_MAX + 64, 0), (4096, 0));
    // Never past the buffer's end: the next claim starts at 0 after padding.
    let near_end = s.capacity - 1024;
    assert_eq!(s.prefetch_span(near_end, 2112, near_end), (near_end, 1024));
    // Never past what the consumer has released: a lap ahead of its head.
    let head = 10 << 20;
    let at = head + s.capacity - 640;
    assert_eq!(
        s.prefetch_span(at, 2112, head),
        (at & (s.capacity - 1), 640)
    );
    assert_eq!(s.prefetch_span(head + s.capacity, 2112, head).1, 0);
    // Small records are prefetched in cold memory too (they are not streamed)...
    assert_eq!(s.prefetch_span(2 << 20, 2112, 0), (2 << 20, 2112));
    // ...but not where the next one, alike, would be: in a 16 KiB ring,
    // cold from 8 KiB and streamed from 2 KiB.
    let (small, _r) = ring(16 << 10);
    let s = &*small.shared;
    assert_eq!(s.prefetch_span(4096, 2112, 0), (4096, 2112));
    assert_eq!(s.prefetch_span(8192, 2112, 0), (8192, 0));
    assert_eq!(s.prefetch_span(8192, 1024, 0), (8192, 1024));
}

#[cfg(target_arch = "x86_64")]
#[test]
fn prefetchw_is_detected_as_linux_reports_it() {
    let info = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo");
    let flags = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .expect("a flags line");
    let linux = flags.split_whitespace().any(|f| f == "3dnowprefetch");
    assert_eq!(storage::has_prefetchw(), linux);
}

/// A body whose buffer counts how often it is dropped.
struct Counted(Vec<u8>, Arc<std::sync::atomic::AtomicUsize>);

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

fn counted(data: &[u8], drops: &Arc<std::sync::atomic::AtomicUsize>) -> Bytes {
    Bytes::from_owner(Counted(data.to_vec(), drops.clone()))
}

/// Pushes a record holding both bodies; on success the ring owns them.
fn push_held(w: &Producer, input: Bytes, output: Bytes, t: u64) -> bool {
    let (i, o) = (
        std::mem::ManuallyDrop::new(input),
        std::mem::ManuallyDrop::new(output),
    );
    let parts = RecordParts {
        input: Some(Payload::new("text/csv", &i)),
        output: Some(Payload::new("application/json", &o)),
        inference_id: Some("held"),
        stamp: t,
        held: [Some(&i), Some(&o)],
    };
    let pushed = push(w, &parts);
    if !pushed {
        drop(std::mem::ManuallyDrop::into_inner(i));
        drop(std::mem::ManuallyDrop::into_inner(o));
    }
    pushed
}

#[test]
fn a_held_record_reads_its_bodies_in_place_and_drops_them_once_read() {
    let drops = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (w, mut r) = ring(1 << 20);
    let input: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let (a, b) = (counted(&input, &drops), counted(b"{\"y\":1}", &drops));
    let at = a.as_ptr();
    assert!(push_held(&w, a, b, 7));
    // Next to a copied record, in the same ring.
    assert!(push(&w, &rec(b"copied", None, 8)));
    assert_eq!(drops.load(Ordering::SeqCst), 0, "the ring owns both bodies");
    let tail = w.shared.claim.0.tail.load(Ordering::Relaxed);
    assert!(
        tail >= footprint(20_000),
        "a held body takes its full size of the ring"
    );
    assert_eq!(
        r.pop(|p| {
            let i = p.input.unwrap();
            assert_eq!(i.data, &input[..]);
            assert_eq!(i.data.as_ptr(), at, "read in place, not copied");
            assert_eq!(i.content_type, "text/csv");
            assert_eq!(p.output.unwrap().data, b"{\"y\":1}");
            assert_eq!(p.inference_id, Some("held"));
            assert_eq!(p.stamp, 7);
            assert_eq!(drops.load(Ordering::SeqCst), 0, "alive while read");
        }),
        Pop::Record
    );
    assert_eq!(drops.load(Ordering::SeqCst), 2, "dropped once read");
    let (p, got) = pop_owned(&mut r);
    assert_eq!((p, got.unwrap().0), (Pop::Record, b"copied".to_vec()));
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

#[test]
fn held_records_wrap_around_and_a_full_ring_gives_the_bodies_back() {
    let drops = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (w, mut r) = ring(64 << 10);
    let body: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
    let mut pushed = 0;
    let mut refused = 0;
    for round in 0..200u64 {
        // Fill until the ring refuses (its space bounds the held bodies)...
        while push_held(&w, counted(&body, &drops), counted(b"1", &drops), round) {
            pushed += 2;
        }
        refused += 2;
        // ...then read all of it back.
        loop {
            let (p, got) = pop_owned(&mut r);
            match p {
                Pop::Record => assert_eq!(got.unwrap().0, body),
                _ => break,
            }
        }
        assert_eq!(drops.load(Ordering::SeqCst), pushed + refused);
    }
    assert!(pushed > 200 * 2 * 8, "only {pushed} bodies went through");
}

#[test]
fn a_ring_dropped_with_held_records_unread_drops_their_bodies_once() {
    let drops = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (w, mut r) = ring(1 << 16);
    for t in 0..6 {
        assert!(push_held(
            &w,
            counted(b"abc", &drops),
            counted(b"de", &drops),
            t
        ));
    }
    // Two read (their bodies dropped then), four never read.
    assert_eq!(r.pop(|_| {}), Pop::Record);
    assert_eq!(r.pop(|_| {}), Pop::Record);
    assert_eq!(drops.load(Ordering::SeqCst), 4);
    drop(r);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        4,
        "the producer still holds the ring"
    );
    // A record pushed after the consumer went is dropped with the ring too.
    assert!(push_held(
        &w,
        counted(b"f", &drops),
        counted(b"g", &drops),
        9
    ));
    drop(w);
    assert_eq!(drops.load(Ordering::SeqCst), 14);
}
