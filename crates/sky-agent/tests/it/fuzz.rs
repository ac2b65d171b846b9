//! The agent's request decoder on arbitrary bytes: no panic, an error for garbage, and never
//! more than the token line read before the token is checked.

use std::pin::Pin;
use std::task::{Context, Poll};

use proptest::prelude::*;
use sky_agent::protocol::{
    MAX_LINE_BYTES, PREAMBLE_MAX_BYTES, RequestError, encode_request, read_request,
};
use sky_agent::{Request, Token};
use tokio::io::{AsyncRead, ReadBuf};

/// A reader over `data` that hands out at most `chunk` bytes per read and counts them.
struct Counting<'a> {
    data: &'a [u8],
    pos: usize,
    chunk: usize,
}

impl AsyncRead for Counting<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self
            .chunk
            .min(buf.remaining())
            .min(self.data.len() - self.pos);
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// Decodes `data`; returns the result and how many bytes the decoder took.
fn decode(data: &[u8], chunk: usize, token: &Token) -> (Result<Request, RequestError>, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut r = Counting {
        data,
        pos: 0,
        chunk: chunk.max(1),
    };
    let res = rt.block_on(read_request(&mut r, token));
    (res, r.pos)
}

fn token() -> Token {
    Token::parse("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn garbage_without_the_token_is_refused_after_at_most_the_token_line(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        chunk in 1usize..700,
    ) {
        let (res, taken) = decode(&data, chunk, &token());
        prop_assert!(res.is_err());
        prop_assert!(taken <= PREAMBLE_MAX_BYTES, "took {taken} bytes");
    }

    #[test]
    fn after_the_token_the_decoder_agrees_with_the_request_parser(
        body in proptest::collection::vec(any::<u8>(), 0..4096),
        chunk in 1usize..700,
    ) {
        let t = token();
        let mut data = format!("{{\"token\":\"{}\"}}\n", t.expose()).into_bytes();
        let head = data.len();
        data.extend_from_slice(&body);
        let (res, taken) = decode(&data, chunk, &t);
        prop_assert!(taken <= data.len());
        let expected = body
            .iter()
            .position(|&b| b == b'\n')
            .and_then(|nl| serde_json::from_slice::<Request>(&body[..nl]).ok());
        match (res, expected) {
            (Ok(got), Some(want)) => prop_assert_eq!(got, want),
            (Err(_), None) => {}
            (got, want) => prop_assert!(false, "decoded {got:?}, the parser says {want:?} ({head} + {} bytes)", body.len()),
        }
    }

    #[test]
    fn mangled_valid_requests_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        chunk in 1usize..700,
    ) {
        let t = token();
        let mut data = encode_request(&t, &Request::Logs { id: Some(3), follow: true, tail: None }).unwrap();
        for (at, byte) in flips {
            let i = at.index(data.len());
            data[i] = byte;
        }
        let (res, _) = decode(&data, chunk, &t);
        if let Ok(req) = res {
            // Whatever decoded came through the right token.
            prop_assert!(data.starts_with(b"{\"token\""), "{req:?}");
        }
    }
}

#[test]
fn encoded_requests_decode_back() {
    let t = token();
    for req in [
        Request::Ping,
        Request::Queue {
            all: true,
            skip_finished: false,
            user: Some("u".into()),
        },
        Request::Kill { job_id: 7 },
    ] {
        let data = encode_request(&t, &req).unwrap();
        for chunk in [1, 7, 4096] {
            let (res, taken) = decode(&data, chunk, &t);
            assert_eq!(res.unwrap(), req);
            assert_eq!(taken, data.len());
        }
    }
}

#[test]
fn a_request_line_over_the_limit_is_refused_after_the_limit() {
    let t = token();
    let mut data = format!("{{\"token\":\"{}\"}}\n", t.expose()).into_bytes();
    let head = data.len();
    data.resize(head + MAX_LINE_BYTES as usize + 4096, b' ');
    let (res, taken) = decode(&data, 1 << 20, &t);
    assert!(matches!(res, Err(RequestError::TooLarge)), "{res:?}");
    assert!(taken <= head + MAX_LINE_BYTES as usize + 1, "took {taken}");
    // exactly at the limit is fine
    let mut data = format!("{{\"token\":\"{}\"}}\n", t.expose()).into_bytes();
    let ping = br#"{"op":"ping"}"#;
    data.extend_from_slice(ping);
    data.resize(head + MAX_LINE_BYTES as usize, b' ');
    data.push(b'\n');
    assert_eq!(decode(&data, 1 << 16, &t).0.unwrap(), Request::Ping);
}
