//! Fuzz check shared by the `escape` target and the corpus replay test: the
//! portable JSON escaper and the one this CPU uses (AVX2 where it has it)
//! write the same bytes for any input, and for text, the bytes serde_json
//! (an independent implementation) writes inside a JSON string.

pub fn check(data: &[u8]) {
    let (portable, best) = capline::fuzzing::escapers(data);
    assert_eq!(portable, best, "the escapers disagree");
    if let Ok(text) = std::str::from_utf8(data) {
        let reference = serde_json::to_string(text).expect("a string serializes");
        assert_eq!(
            portable,
            reference.as_bytes()[1..reference.len() - 1],
            "serde_json escapes differently"
        );
    }
}
