//! Fuzz check shared by the `escape` target and the corpus replay test: the
//! portable JSON escaper and the one this CPU uses (AVX2 where it has it)
//! write the same bytes for any input and both say whether it was all ASCII
//! (the writer skips UTF-8 validation on their word), and for text, the
//! bytes serde_json (an independent implementation) writes inside a JSON
//! string.

pub fn check(data: &[u8]) {
    let ((portable, portable_ascii), (best, best_ascii)) = capline::fuzzing::escapers(data);
    assert_eq!(portable, best, "the escapers disagree");
    assert_eq!(
        portable_ascii,
        data.is_ascii(),
        "the portable escaper's ASCII flag"
    );
    assert_eq!(
        best_ascii,
        data.is_ascii(),
        "the dispatched escaper's ASCII flag"
    );
    if let Ok(text) = std::str::from_utf8(data) {
        let reference = serde_json::to_string(text).expect("a string serializes");
        assert_eq!(
            portable,
            reference.as_bytes()[1..reference.len() - 1],
            "serde_json escapes differently"
        );
    }
}
