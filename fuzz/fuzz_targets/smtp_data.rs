//! The DATA receiver against a model of RFC 5321 4.5.2, in any cut of the input into reads.
//!
//! Options: bit 0 `lenient_lf`, bit 1 `keep_dots`, bit 2 a 64-octet size limit, bit 3 a
//! 20-octet line limit. Strict mode (bit 0 clear) must end exactly at the first
//! `<CRLF>.<CRLF>` and accept a message exactly when it has no bare CR or LF and fits the
//! limits; what it returns has no bare CR or LF. Any mode keeps to the size limit. And
//! `dot_stuff` of the data, received in the same cut, gives the data back with CRLF line ends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reference_server::net::dot_stuff;
use reference_server::smtp::data::{DataReceiver, Progress, Violation};
use reference_server_fuzz::Input;

fuzz_target!(|bytes: &[u8]| {
    let input = Input::parse(bytes);
    let lenient = input.option(0);
    let keep_dots = input.option(1);
    let max_size: u64 = if input.option(2) { 64 } else { 1 << 20 };
    let line_limit = if input.option(3) { 20 } else { 1000 };

    let mut receiver = DataReceiver::new(max_size, line_limit)
        .lenient_lf(lenient)
        .keep_dots(keep_dots);
    let end = feed(&mut receiver, &input.chunks());
    let result = receiver.finish();
    if let Ok(body) = &result {
        assert!(body.len() as u64 <= max_size);
    }
    if !lenient {
        check_strict(input.data, end, &result, keep_dots, max_size, line_limit);
    }

    // dot_stuff, then receive: the data comes back with every line ended by CRLF.
    let mut wire = Vec::new();
    dot_stuff(&mut wire, input.data);
    let mut sizes = input.chunks().into_iter().map(<[u8]>::len).cycle();
    let mut pieces = Vec::new();
    let mut rest = &wire[..];
    while !rest.is_empty() {
        let size = sizes.next().unwrap_or(1).clamp(1, rest.len());
        let (piece, next) = rest.split_at(size);
        pieces.push(piece);
        rest = next;
    }
    let mut receiver = DataReceiver::new(u64::MAX, usize::MAX);
    assert_eq!(feed(&mut receiver, &pieces), Some(wire.len()), "{wire:?}");
    let expected = crlf_normalised(input.data);
    match receiver.finish() {
        Ok(body) => assert_eq!(body, expected),
        // A CR not before a LF stays bare through dot_stuff, and is refused.
        Err(Violation::BareCr(_)) => assert!(has_bare_cr(&expected), "{expected:?}"),
        Err(Violation::Nul(_)) => assert!(expected.contains(&0), "{expected:?}"),
        Err(other) => panic!("{other:?} for {wire:?}"),
    }
});

/// Feeds the reads until the end of data; the octets consumed then.
fn feed(receiver: &mut DataReceiver, chunks: &[&[u8]]) -> Option<usize> {
    let mut consumed = 0;
    for chunk in chunks {
        match receiver.feed(chunk) {
            Progress::NeedMore => consumed += chunk.len(),
            Progress::Done(n) => {
                assert!(n <= chunk.len());
                return Some(consumed + n);
            }
        }
    }
    None
}

/// Strict mode against the model.
fn check_strict(
    data: &[u8],
    end: Option<usize>,
    result: &Result<Vec<u8>, Violation>,
    keep_dots: bool,
    max_size: u64,
    line_limit: usize,
) {
    let expected_end = if data.starts_with(b".\r\n") {
        Some(3)
    } else {
        data.windows(5)
            .position(|w| w == b"\r\n.\r\n")
            .map(|at| at + 5)
    };
    assert_eq!(end, expected_end);
    if let Ok(body) = result {
        assert!(!has_bare_cr(body) && !has_bare_lf(body), "{body:?}");
    }
    let Some(end) = end else {
        return;
    };
    // The message is the lines before the final ".": each ends with CRLF (the search above
    // found the first CRLF.CRLF), so only inner CRs and LFs can be bare.
    let wire = &data[..end - 3];
    let lines: Vec<&[u8]> = wire
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut body = Vec::new();
    let mut bare = false;
    let mut long = false;
    // A NUL anywhere in the message makes it refused too (RFC 6152 section 3).
    let nul = wire.contains(&0);
    for line in &lines {
        long |= line.len() > line_limit;
        // A line whose LF has no CR before it does not end there for the receiver, but any
        // line holding a bare CR or LF makes the message refused all the same.
        let content = line.strip_suffix(b"\r\n").unwrap_or(line);
        bare |= !line.ends_with(b"\r\n") || content.contains(&b'\r') || content.contains(&b'\n');
        body.extend_from_slice(match line.strip_prefix(b".") {
            Some(rest) if !keep_dots => rest,
            _ => line,
        });
    }
    match result {
        Ok(got) => {
            assert!(!bare && !long && !nul && body.len() as u64 <= max_size, "{data:?}");
            assert_eq!(got, &body);
        }
        // Size wins over the other violations. Around a bare line end the receiver's idea of
        // where lines start differs from the model's, so sizes are compared only without one.
        Err(Violation::TooLarge) => assert!(bare || body.len() as u64 > max_size, "{data:?}"),
        Err(Violation::Nul(_)) => assert!(nul, "{data:?}: {result:?}"),
        Err(_) => {
            assert!(bare || long, "{data:?}: {result:?}");
            assert!(
                bare || body.len() as u64 <= max_size,
                "{data:?}: {result:?}"
            );
        }
    }
}

/// Each line of `data` (split at LF, one CR before it dropped) ended with CRLF: what
/// `dot_stuff` then unstuffing make of it.
fn crlf_normalised(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in data.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn has_bare_cr(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
}

fn has_bare_lf(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
}
