//! Loom model checks of the claim/commit/consume protocol. Run with
//! `RUSTFLAGS="--cfg capline_loom" cargo test -p capline --release --lib ring::loom_tests`.

use super::*;

/// Pushes `r` with its own size.
fn push(w: &Producer, r: &RecordParts) -> bool {
    w.try_push(r, r.size())
}

fn rec(data: &[u8], t: u64) -> RecordParts<'_> {
    RecordParts {
        input: Some(Payload::new("", data)),
        output: None,
        inference_id: None,
        stamp: t,
        held: [None, None],
    }
}

/// Two producers and the consumer: every record pushed is read exactly once, intact.
#[test]
fn two_producers_one_consumer() {
    loom::model(|| {
        let (w, mut r) = ring(128);
        let w2 = w.clone();
        let t = loom::thread::spawn(move || push(&w2, &rec(&[2, 2, 2], 2)));
        let a = push(&w, &rec(&[1], 1));
        let mut got = Vec::new();
        let b = t.join().unwrap();
        loop {
            let mut item = None;
            match r.pop(|p| item = Some((p.stamp, p.input.unwrap().data.to_vec()))) {
                Pop::Record => got.push(item.unwrap()),
                _ => break,
            }
        }
        got.sort();
        let mut want = Vec::new();
        if a {
            want.push((1, vec![1]));
        }
        if b {
            want.push((2, vec![2, 2, 2]));
        }
        assert_eq!(got, want);
    });
}

/// A producer reusing space the consumer just freed (wrap-around with
/// padding) never races with the consumer's reads or its clearing of headers.
#[test]
fn reuse_after_consume_is_ordered() {
    loom::model(|| {
        // 64 bytes: one record (one 64-byte unit) fits; the second must wait for the first to be consumed.
        let (w, mut r) = ring(64);
        assert!(push(&w, &rec(&[9; 8], 1)));
        let w2 = w.clone();
        let t = loom::thread::spawn(move || {
            let mut pushed = 0;
            for i in 0..2 {
                if push(&w2, &rec(&[7; 8], 10 + i)) {
                    pushed += 1;
                }
            }
            pushed
        });
        let mut got = Vec::new();
        for _ in 0..3 {
            let mut item = None;
            if r.pop(|p| item = Some((p.stamp, p.input.unwrap().data.to_vec()))) == Pop::Record {
                got.push(item.unwrap());
            }
        }
        let pushed = t.join().unwrap();
        while r.pop(|p| got.push((p.stamp, p.input.unwrap().data.to_vec()))) == Pop::Record {}
        assert_eq!(got.len(), 1 + pushed);
        assert_eq!(got[0], (1, vec![9; 8]));
        for g in &got[1..] {
            assert_eq!(g.1, vec![7; 8]);
        }
    });
}

/// A producer that claims on the head another producer saw (without reading
/// `head` itself) is still ordered after the consumer's reads of that space.
#[test]
fn claims_on_a_head_another_producer_saw_are_ordered() {
    loom::model(|| {
        // Two units, both taken; the consumer frees them while two producers
        // push one record each.
        let (w, mut r) = ring(128);
        assert!(push(&w, &rec(&[1; 8], 1)));
        assert!(push(&w, &rec(&[2; 8], 2)));
        let consumer = loom::thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..4 {
                let mut item = None;
                if r.pop(|p| item = Some((p.stamp, p.input.unwrap().data.to_vec()))) == Pop::Record
                {
                    got.push(item.unwrap());
                }
            }
            (got, r)
        });
        let w2 = w.clone();
        let p = loom::thread::spawn(move || push(&w2, &rec(&[3; 8], 3)));
        let d = push(&w, &rec(&[4; 8], 4));
        let c = p.join().unwrap();
        let (mut got, mut r) = consumer.join().unwrap();
        while r.pop(|p| got.push((p.stamp, p.input.unwrap().data.to_vec()))) == Pop::Record {}
        let mut want = vec![(1, vec![1; 8]), (2, vec![2; 8])];
        if c {
            want.push((3, vec![3; 8]));
        }
        if d {
            want.push((4, vec![4; 8]));
        }
        got.sort();
        assert_eq!(got, want);
    });
}
