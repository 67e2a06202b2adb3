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
                i += memchr::memchr(b'"', &body[i..]).ok_or(())?;
                if body.get(i + 1) == Some(&b'"') {
                    i += 2;
                } else {
                    i += 1;
                    break;
                }
            }
            if !matches!(body.get(i), None | Some(b',' | b'\n' | b'\r')) {
                return Err(());
            }
        } else {
            i += memchr::memchr3(b',', b'\n', b'\r', &body[i..]).unwrap_or(body.len() - i);
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
            // Past the last column to replace, with no text to search: on
            // to the next line. (A quoted field there may hold a line end:
            // go field by field when the rest of the line has a quote.)
            Some(b',')
                if !want_text
                    && columns.last().is_none_or(|&last| column >= last)
                    && skip_line(body, &mut i) =>
            {
                column = 0;
            }
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

/// From a comma, moves `i` past the end of its line if no quote comes before
/// that end; `false` (and `i` unchanged) if one does.
fn skip_line(body: &[u8], i: &mut usize) -> bool {
    let rest = &body[*i..];
    let end = memchr::memchr2(b'\n', b'\r', rest).unwrap_or(rest.len());
    if memchr::memchr(b'"', &rest[..end]).is_some() {
        return false;
    }
    *i += end;
    match body.get(*i) {
        Some(b'\r') if body.get(*i + 1) == Some(&b'\n') => *i += 2,
        Some(_) => *i += 1,
        None => {}
    }
    true
}
