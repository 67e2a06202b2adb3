//! CSV bodies (RFC 4180: commas, `"`-quoted fields with `""` inside, CRLF
//! or LF line ends): the byte spans of the fields in the configured columns,
//! and of the other fields for the patterns.

use super::Region;

/// Finds the regions of `body`: `Region::Marker` for each field whose
/// 0-based column is in `columns` (sorted), and (when `want_text`)
/// `Region::CsvText` for every other non-empty field. `Err` if a quoted
/// field is not closed, or is followed by anything but a comma or a line end.
pub(super) fn scan(
    body: &[u8],
    columns: &[usize],
    want_text: bool,
    regions: &mut Vec<Region>,
) -> Result<(), ()> {
    let mut i = 0;
    let mut column = 0;
    while i < body.len() {
        let start = i;
        let quoted = body[i] == b'"';
        if quoted {
            i += 1;
            loop {
                match body.get(i) {
                    None => return Err(()),
                    Some(b'"') if body.get(i + 1) == Some(&b'"') => i += 2,
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
            if !matches!(body.get(i), None | Some(b',' | b'\n' | b'\r')) {
                return Err(());
            }
        } else {
            while !matches!(body.get(i), None | Some(b',' | b'\n' | b'\r')) {
                i += 1;
            }
        }
        let field = start..i;
        if columns.binary_search(&column).is_ok() {
            // An empty field stays empty: there is nothing to hide.
            if !field.is_empty() {
                regions.push(Region::Marker(field, false));
            }
        } else if want_text && !field.is_empty() {
            regions.push(Region::CsvText(field, quoted));
        }
        match body.get(i) {
            Some(b',') => {
                i += 1;
                column += 1;
            }
            Some(b'\r') => {
                i += if body.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                column = 0;
            }
            Some(b'\n') => {
                i += 1;
                column = 0;
            }
            _ => {}
        }
    }
    Ok(())
}
