//! Envoy's `CheckRequest`, decoded only as far as a decision needs it: the
//! `authorization` values of the client's request.
//!
//! Envoy sends every attribute it has (peers, the request's headers, path,
//! metadata, ...). Decoded into `envoy-types`' full message, each header
//! became two owned strings in a `HashMap` before the handler read one of
//! them, which made Check a third dearer than Verify. Here every field the
//! decision does not read is skipped on the wire, header names are compared
//! without copying (zero-copy `Bytes` over the request's buffer), and only
//! the `authorization` value is copied out.
//!
//! The path read: `CheckRequest.attributes` (1) → `AttributeContext.request`
//! (4) → `Request.http` (2) → `HttpRequest.headers` (3, a `map<string,
//! string>`) or `HttpRequest.header_map` (13, `HeaderMap.headers` (1) of
//! `HeaderValue { key = 1, value = 2, raw_value = 3 }`).

use std::fmt;

use prost::bytes::{Buf, BufMut, Bytes};
use prost::{
    DecodeError, Message,
    encoding::{self, DecodeContext, WireType},
};

const AUTHORIZATION: &[u8] = b"authorization";

/// `envoy.service.auth.v3.CheckRequest`, reduced to the client's
/// `authorization` header values. Its `Debug` shows how many there are,
/// never their contents.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckRequest {
    /// `attributes.request.http`, as far as it is read.
    http: HttpRequest,
}

/// `CheckRequest.attributes`.
const ATTRIBUTES: u32 = 1;

/// The generic decoder's view of the path down to `HttpRequest`, for bytes
/// the fast path (`scan`) does not take.
#[derive(Clone, PartialEq, Message)]
struct AttributeContext {
    #[prost(message, optional, tag = "4")]
    request: Option<Request>,
}

#[derive(Clone, PartialEq, Message)]
struct Request {
    #[prost(message, optional, tag = "2")]
    http: Option<HttpRequest>,
}

impl CheckRequest {
    /// The request with these `authorization` values in `headers`, as
    /// Envoy sends them by default (repeats joined into one value).
    #[cfg(test)]
    pub fn with_header(value: &[u8]) -> Self {
        Self::with_http(HttpRequest {
            headers: Some(value.to_vec()),
            header_map: Vec::new(),
        })
    }

    #[cfg(test)]
    fn with_http(http: HttpRequest) -> Self {
        Self { http }
    }

    /// The client's `authorization` values, taken out: from `headers` (keys
    /// in lower case, repeats joined by Envoy), or from `header_map` when
    /// Envoy sends raw headers (`encode_raw_headers: true`, repeats kept
    /// apart). None when the client sent none.
    pub fn into_authorization(self) -> Vec<Vec<u8>> {
        match self.http.headers {
            Some(value) => vec![value],
            None => self.http.header_map,
        }
    }

    /// The same message as the generic decoder's types, for encoding.
    fn attributes(&self) -> AttributeContext {
        AttributeContext {
            request: Some(Request {
                http: Some(self.http.clone()),
            }),
        }
    }
}

impl Message for CheckRequest {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        encoding::message::encode(ATTRIBUTES, &self.attributes(), buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if tag != ATTRIBUTES {
            return encoding::skip_field(wire_type, tag, buf, ctx);
        }
        // Envoy's attributes are mostly what this service never reads
        // (peers, every header, metadata): skipped on a slice, a thousand
        // bytes cost a few thousand instructions less than through `Buf`.
        if wire_type == WireType::LengthDelimited
            && let Some((consumed, http)) = scan::attributes(buf.chunk())
        {
            buf.advance(consumed);
            self.http.merge(http);
            return Ok(());
        }
        let mut attributes = AttributeContext::default();
        encoding::message::merge(wire_type, &mut attributes, buf, ctx)?;
        if let Some(http) = attributes.request.and_then(|request| request.http) {
            self.http.merge(http);
        }
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        encoding::message::encoded_len(ATTRIBUTES, &self.attributes())
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// `AttributeContext.HttpRequest`, reduced to its `authorization` values.
#[derive(Clone, Default, PartialEq)]
struct HttpRequest {
    /// The value of `headers["authorization"]`; as in any protobuf map, the
    /// last entry of a repeated key wins.
    headers: Option<Vec<u8>>,
    /// Each `authorization` entry of `header_map`: its `raw_value`, or its
    /// `value` when `raw_value` is empty.
    header_map: Vec<Vec<u8>>,
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("HttpRequest")
            .field("authorization_in_headers", &self.headers.is_some())
            .field("authorization_in_header_map", &self.header_map.len())
            .finish()
    }
}

const HEADERS: u32 = 3;
const HEADER_MAP: u32 = 13;
/// `HeaderMap.headers`.
const HEADER_MAP_HEADERS: u32 = 1;

impl Message for HttpRequest {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if let Some(value) = &self.headers {
            let entry = Header::of_map(value);
            encoding::message::encode(HEADERS, &entry, buf);
        }
        if !self.header_map.is_empty() {
            encoding::encode_key(HEADER_MAP, WireType::LengthDelimited, buf);
            encoding::encode_varint(self.header_map_len() as u64, buf);
            for value in &self.header_map {
                encoding::message::encode(HEADER_MAP_HEADERS, &Header::of_header_map(value), buf);
            }
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            HEADERS => {
                encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
                let mut entry = Header::default();
                encoding::merge_loop(&mut entry, buf, ctx, |entry, buf, ctx| {
                    let (tag, wire_type) = encoding::decode_key(buf)?;
                    entry.merge(tag, wire_type, buf, ctx, Header::MAP_VALUE)
                })?;
                if let Some(value) = entry.authorization() {
                    self.headers = Some(value);
                }
                Ok(())
            }
            HEADER_MAP => {
                encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
                encoding::merge_loop(self, buf, ctx, |http, buf, ctx| {
                    let (tag, wire_type) = encoding::decode_key(buf)?;
                    if tag != HEADER_MAP_HEADERS {
                        return encoding::skip_field(wire_type, tag, buf, ctx);
                    }
                    encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
                    let mut header = Header::default();
                    encoding::merge_loop(&mut header, buf, ctx, |header, buf, ctx| {
                        let (tag, wire_type) = encoding::decode_key(buf)?;
                        header.merge(tag, wire_type, buf, ctx, Header::HEADER_VALUE)
                    })?;
                    http.header_map.extend(header.authorization());
                    Ok(())
                })
            }
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let headers = self
            .headers
            .as_ref()
            .map_or(0, |value| encoding::message::encoded_len(HEADERS, &Header::of_map(value)));
        let header_map = if self.header_map.is_empty() {
            0
        } else {
            let len = self.header_map_len();
            encoding::key_len(HEADER_MAP) + encoding::encoded_len_varint(len as u64) + len
        };
        headers + header_map
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

impl HttpRequest {
    /// Protobuf's merge of a later occurrence of the message: the map's
    /// entry replaces, the repeated field's entries add.
    fn merge(&mut self, later: HttpRequest) {
        if later.headers.is_some() {
            self.headers = later.headers;
        }
        self.header_map.extend(later.header_map);
    }

    /// The encoded length of the `HeaderMap` message.
    fn header_map_len(&self) -> usize {
        self.header_map
            .iter()
            .map(|value| encoding::message::encoded_len(HEADER_MAP_HEADERS, &Header::of_header_map(value)))
            .sum()
    }
}

/// One header as it arrives: a `headers` map entry (key 1, value 2), or a
/// `HeaderValue` (key 1, value 2, raw_value 3). The name is held without a
/// copy; a value only once the name says it is wanted (or while the name
/// has not come yet: fields may arrive in any order).
#[derive(Default)]
struct Header {
    name: Bytes,
    value: Vec<u8>,
    raw_value: Vec<u8>,
    /// Whether `name` arrived.
    named: bool,
}

impl Header {
    /// The fields of a map entry, and of a `HeaderValue`.
    const MAP_VALUE: &[u32] = &[2];
    const HEADER_VALUE: &[u32] = &[2, 3];

    fn of_map(value: &[u8]) -> Self {
        Self {
            name: Bytes::from_static(AUTHORIZATION),
            value: value.to_vec(),
            raw_value: Vec::new(),
            named: true,
        }
    }

    fn of_header_map(value: &[u8]) -> Self {
        Self {
            raw_value: value.to_vec(),
            ..Self::of_map(&[])
        }
    }

    fn is_authorization(&self) -> bool {
        self.name.eq_ignore_ascii_case(AUTHORIZATION)
    }

    fn merge(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
        value_tags: &[u32],
    ) -> Result<(), DecodeError> {
        match tag {
            1 => {
                self.named = true;
                encoding::bytes::merge(wire_type, &mut self.name, buf, ctx)
            }
            2 | 3 if value_tags.contains(&tag) => {
                if self.named && !self.is_authorization() {
                    return encoding::skip_field(wire_type, tag, buf, ctx);
                }
                let value = if tag == 2 { &mut self.value } else { &mut self.raw_value };
                encoding::bytes::merge(wire_type, value, buf, ctx)
            }
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    /// The value, when this is the `authorization` header: `raw_value`, or
    /// `value` when `raw_value` is empty (Envoy fills one of them).
    fn authorization(self) -> Option<Vec<u8>> {
        if !self.is_authorization() {
            return None;
        }
        Some(if self.raw_value.is_empty() {
            self.value
        } else {
            self.raw_value
        })
    }
}

/// Encoding, for the `Message` contract (tests, and a client that would
/// send this type): the `authorization` header alone.
impl Message for Header {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        encoding::bytes::encode(1, &self.name, buf);
        if !self.value.is_empty() {
            encoding::bytes::encode(2, &self.value, buf);
        }
        if !self.raw_value.is_empty() {
            encoding::bytes::encode(3, &self.raw_value, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        self.merge(tag, wire_type, buf, ctx, Self::HEADER_VALUE)
    }

    fn encoded_len(&self) -> usize {
        let field = |tag, value: &[u8]| {
            if value.is_empty() {
                0
            } else {
                encoding::key_len(tag) + encoding::encoded_len_varint(value.len() as u64) + value.len()
            }
        };
        encoding::bytes::encoded_len(1, &self.name) + field(2, &self.value) + field(3, &self.raw_value)
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

impl fmt::Debug for Header {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("Header").field("name", &self.name).finish_non_exhaustive()
    }
}

/// The fast path: the attributes read from one contiguous slice (tonic
/// hands a message over in one), borrowing everything but the
/// `authorization` values. It accepts only what the generic decoder
/// accepts and reads it the same way; on anything else (malformed bytes, a
/// group, a wire type it does not expect, a message split across chunks)
/// it answers None, and the generic decoder reads the same bytes and says
/// what is wrong. `tests::the_fast_path_agrees_with_the_generic_decoder`
/// holds it to that.
mod scan {
    use super::{AUTHORIZATION, HEADER_MAP, HEADER_MAP_HEADERS, HEADERS, HttpRequest};

    /// `AttributeContext.request`, `Request.http`.
    const REQUEST: u32 = 4;
    const HTTP: u32 = 2;

    /// A field's contents: borrowed when length-delimited; the others are
    /// only skipped.
    enum Value<'a> {
        Delimited(&'a [u8]),
        Scalar,
    }

    /// The attributes field's length and contents at the start of `chunk`:
    /// how many bytes that is, and its HTTP request's `authorization`s.
    pub(super) fn attributes(chunk: &[u8]) -> Option<(usize, HttpRequest)> {
        let mut rest = chunk;
        let len = usize::try_from(varint(&mut rest)?).ok()?;
        let body = rest.get(..len)?;
        let mut http = HttpRequest::default();
        for_each_field(body, |tag, value| match (tag, value) {
            (REQUEST, Value::Delimited(request)) => for_each_field(request, |tag, value| match (tag, value) {
                (HTTP, Value::Delimited(fields)) => http_request(fields, &mut http),
                (HTTP, Value::Scalar) => None,
                _ => Some(()),
            }),
            (REQUEST, Value::Scalar) => None,
            _ => Some(()),
        })?;
        Some((chunk.len() - rest.len() + len, http))
    }

    fn http_request(fields: &[u8], http: &mut HttpRequest) -> Option<()> {
        for_each_field(fields, |tag, value| match (tag, value) {
            (HEADERS, Value::Delimited(entry)) => {
                if let Some(value) = header(entry, &[2])? {
                    http.headers = Some(value.to_vec());
                }
                Some(())
            }
            (HEADER_MAP, Value::Delimited(map)) => for_each_field(map, |tag, value| match (tag, value) {
                (HEADER_MAP_HEADERS, Value::Delimited(header_value)) => {
                    http.header_map.extend(header(header_value, &[2, 3])?.map(<[u8]>::to_vec));
                    Some(())
                }
                (HEADER_MAP_HEADERS, Value::Scalar) => None,
                _ => Some(()),
            }),
            (HEADERS | HEADER_MAP, Value::Scalar) => None,
            _ => Some(()),
        })
    }

    /// A map entry (key 1, value 2) or a `HeaderValue` (key 1, value 2,
    /// raw_value 3): its value when its name is `authorization` (the raw
    /// value, or the value when the raw one is empty), as in `super::Header`.
    fn header<'a>(fields: &'a [u8], value_tags: &[u32]) -> Option<Option<&'a [u8]>> {
        let (mut name, mut value, mut raw_value): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
        for_each_field(fields, |tag, field| match (tag, field) {
            (1, Value::Delimited(bytes)) => {
                name = bytes;
                Some(())
            }
            (2, Value::Delimited(bytes)) if value_tags.contains(&2) => {
                value = bytes;
                Some(())
            }
            (3, Value::Delimited(bytes)) if value_tags.contains(&3) => {
                raw_value = bytes;
                Some(())
            }
            (1, Value::Scalar) => None,
            (2 | 3, Value::Scalar) if value_tags.contains(&tag) => None,
            _ => Some(()),
        })?;
        let authorization = name.eq_ignore_ascii_case(AUTHORIZATION);
        Some(authorization.then_some(if raw_value.is_empty() { value } else { raw_value }))
    }

    /// Calls `visit` with each field of a message, in order; None as soon
    /// as a field is malformed or `visit` answers None.
    fn for_each_field<'a>(mut fields: &'a [u8], mut visit: impl FnMut(u32, Value<'a>) -> Option<()>) -> Option<()> {
        while !fields.is_empty() {
            let key = varint(&mut fields)?;
            let tag = u32::try_from(key >> 3).ok().filter(|&tag| tag != 0)?;
            let value = match key & 7 {
                0 => varint(&mut fields).map(|_| Value::Scalar)?,
                1 => skip(&mut fields, 8)?,
                2 => {
                    let len = usize::try_from(varint(&mut fields)?).ok()?;
                    let (bytes, rest) = fields.split_at_checked(len)?;
                    fields = rest;
                    Value::Delimited(bytes)
                }
                5 => skip(&mut fields, 4)?,
                // Groups (3, 4) are proto2's and rare: the generic decoder's.
                _ => return None,
            };
            visit(tag, value)?;
        }
        Some(())
    }

    fn skip<'a>(fields: &mut &'a [u8], len: usize) -> Option<Value<'a>> {
        *fields = fields.get(len..)?;
        Some(Value::Scalar)
    }

    /// A varint of at most ten bytes that fits 64 bits, as protobuf allows.
    fn varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for (index, &byte) in bytes.iter().enumerate().take(10) {
            if index == 9 && byte > 1 {
                return None;
            }
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte < 0x80 {
                *bytes = &bytes[index + 1..];
                return Some(value);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use envoy_types::pb::envoy::{
        config::core::v3::{Address, HeaderMap, HeaderValue, SocketAddress, address, socket_address},
        service::auth::v3::{
            AttributeContext as FullContext, CheckRequest as FullRequest,
            attribute_context::{HttpRequest as FullHttp, Peer, Request as FullInner},
        },
    };

    use prost::bytes::Buf;

    use super::*;

    fn full(http: FullHttp) -> FullRequest {
        let peer = |port| Peer {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: "10.0.0.7".into(),
                    port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                    ..Default::default()
                })),
            }),
            principal: "spiffe://cluster.local/ns/default/sa/frontend".into(),
            ..Default::default()
        };
        FullRequest {
            attributes: Some(FullContext {
                source: Some(peer(51234)),
                destination: Some(peer(8080)),
                request: Some(FullInner {
                    time: Some(Default::default()),
                    http: Some(http),
                }),
                context_extensions: HashMap::from([("route".to_owned(), "orders".to_owned())]),
                ..Default::default()
            }),
        }
    }

    fn envoy_headers(pairs: &[(&str, &str)]) -> FullHttp {
        FullHttp {
            id: "13359530607844510314".into(),
            method: "GET".into(),
            path: "/orders?page=2".into(),
            host: "api.example.com".into(),
            scheme: "https".into(),
            protocol: "HTTP/2".into(),
            headers: pairs.iter().map(|&(key, value)| (key.to_owned(), value.to_owned())).collect(),
            ..Default::default()
        }
    }

    fn decoded(request: &FullRequest) -> Vec<Vec<u8>> {
        CheckRequest::decode(request.encode_to_vec().as_slice()).expect("decodes").into_authorization()
    }

    #[test]
    fn the_authorization_header_is_found_among_everything_envoy_sends() {
        let request = full(envoy_headers(&[
            (":authority", "api.example.com"),
            (":method", "GET"),
            ("user-agent", "curl/8.5.0"),
            ("authorization", "Bearer aaa.bbb.ccc"),
            ("x-request-id", "4b2a6c1e"),
            ("x-forwarded-proto", "https"),
        ]));
        assert_eq!(decoded(&request), vec![b"Bearer aaa.bbb.ccc".to_vec()]);
    }

    #[test]
    fn no_authorization_header_is_none() {
        assert!(decoded(&full(envoy_headers(&[("user-agent", "curl/8.5.0")]))).is_empty());
        assert!(decoded(&FullRequest::default()).is_empty());
        assert!(decoded(&full(FullHttp::default())).is_empty());
    }

    #[test]
    fn raw_headers_keep_repeats_apart_and_prefer_the_raw_value() {
        let header = |key: &str, value: &str, raw: &[u8]| HeaderValue {
            key: key.into(),
            value: value.into(),
            raw_value: raw.to_vec(),
        };
        let request = full(FullHttp {
            header_map: Some(HeaderMap {
                headers: vec![
                    header(":path", "", b"/orders"),
                    header("Authorization", "", b"Bearer one"),
                    header("x-request-id", "", b"4b2a6c1e"),
                    header("authorization", "Bearer two", b""),
                ],
            }),
            ..Default::default()
        });
        assert_eq!(decoded(&request), vec![b"Bearer one".to_vec(), b"Bearer two".to_vec()]);
    }

    #[test]
    fn the_headers_map_wins_over_the_header_map_as_before() {
        let request = full(FullHttp {
            headers: HashMap::from([("authorization".to_owned(), "Bearer map".to_owned())]),
            header_map: Some(HeaderMap {
                headers: vec![HeaderValue {
                    key: "authorization".into(),
                    raw_value: b"Bearer raw".to_vec(),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        });
        assert_eq!(decoded(&request), vec![b"Bearer map".to_vec()]);
    }

    /// Protobuf lets a message's fields come in any order and a map's key
    /// repeat (the last entry wins); encoders differ, so both are handled.
    #[test]
    fn fields_in_any_order_and_the_last_repeated_map_key_win() {
        let request = CheckRequest::decode(repeated_keys_in_any_order().as_slice()).expect("decodes");
        assert_eq!(request.into_authorization(), vec![b"Bearer second".to_vec()]);
    }

    /// Map entries written value first, and `authorization` twice.
    fn repeated_keys_in_any_order() -> Vec<u8> {
        let entry = |first: (u32, &[u8]), second: (u32, &[u8])| {
            let mut entry = Vec::new();
            encoding::bytes::encode(first.0, &first.1.to_vec(), &mut entry);
            encoding::bytes::encode(second.0, &second.1.to_vec(), &mut entry);
            entry
        };
        let mut http = Vec::new();
        for entry in [
            entry((2, b"Bearer first"), (1, b"authorization")),
            entry((1, b"accept"), (2, b"*/*")),
            entry((2, b"Bearer second"), (1, b"AUTHORIZATION")),
        ] {
            encoding::bytes::encode(HEADERS, &entry, &mut http);
        }
        nest(1, nest(4, nest(2, http)))
    }

    #[test]
    fn what_it_encodes_envoys_own_types_read_back() {
        let ours = CheckRequest::with_header(b"Bearer aaa.bbb.ccc");
        let theirs = FullRequest::decode(ours.encode_to_vec().as_slice()).expect("decodes");
        let http = theirs.attributes.and_then(|attributes| attributes.request?.http).expect("http");
        assert_eq!(http.headers.get("authorization").map(String::as_str), Some("Bearer aaa.bbb.ccc"));

        let raw = CheckRequest::with_http(HttpRequest {
            headers: None,
            header_map: vec![b"Bearer one".to_vec(), b"Bearer two".to_vec()],
        });
        assert_eq!(raw.encoded_len(), raw.encode_to_vec().len());
        assert_eq!(
            CheckRequest::decode(raw.encode_to_vec().as_slice()).expect("decodes"),
            raw,
            "its own encoding decodes to itself"
        );
    }

    /// Every cut of a real request, and every byte of it changed, decodes or
    /// fails with an error: never a panic.
    #[test]
    fn truncated_or_corrupted_requests_are_errors_not_panics() {
        let wire = full(envoy_headers(&[("authorization", "Bearer aaa.bbb.ccc"), ("accept", "*/*")])).encode_to_vec();
        for cut in 0..wire.len() {
            let _ = CheckRequest::decode(&wire[..cut]);
        }
        for position in 0..wire.len() {
            for byte in [0x00, 0x01, 0x0a, 0x7f, 0x80, 0xff] {
                let mut corrupted = wire.clone();
                corrupted[position] = byte;
                let _ = CheckRequest::decode(corrupted.as_slice());
            }
        }
        assert!(CheckRequest::decode(&wire[..wire.len() - 1]).is_err());
    }

    fn nest(tag: u32, inner: Vec<u8>) -> Vec<u8> {
        let mut outer = Vec::new();
        encoding::bytes::encode(tag, &inner, &mut outer);
        outer
    }

    /// A request whose attributes carry an unknown varint field written in
    /// `bytes`: ten bytes is the most protobuf allows, and the tenth may
    /// only hold the 64th bit.
    fn with_varint(bytes: &[u8]) -> Vec<u8> {
        let mut attributes = vec![15 << 3];
        attributes.extend_from_slice(bytes);
        attributes.extend(nest(
            4,
            nest(2, nest(3, [nest(1, b"authorization".to_vec()), nest(2, b"Bearer x".to_vec())].concat())),
        ));
        nest(1, attributes)
    }

    /// The bytes of a request with both kinds of headers, several
    /// `authorization`s and everything else Envoy sends around them.
    fn busy_request() -> Vec<u8> {
        let mut http = envoy_headers(&[
            (":authority", "api.example.com"),
            ("authorization", "Bearer from.the.map"),
            ("x-request-id", "4b2a6c1e"),
        ]);
        http.header_map = Some(HeaderMap {
            headers: vec![
                HeaderValue {
                    key: "Authorization".into(),
                    raw_value: b"Bearer raw.one".to_vec(),
                    ..Default::default()
                },
                HeaderValue {
                    key: "accept".into(),
                    value: "*/*".into(),
                    ..Default::default()
                },
                HeaderValue {
                    key: "authorization".into(),
                    value: "Bearer raw.two".into(),
                    ..Default::default()
                },
            ],
        });
        full(http).encode_to_vec()
    }

    /// The generic decoder alone: a buffer in two pieces, split after the
    /// first key and the first byte of the attributes' length, gives the
    /// fast path too little contiguous to read.
    fn generic(wire: &[u8]) -> Result<CheckRequest, DecodeError> {
        let split = wire.len().min(2);
        CheckRequest::decode(wire[..split].chain(&wire[split..]))
    }

    /// The fast path may only be faster: for every input, what it decodes
    /// (or, falling back, fails to) is what the generic decoder says.
    #[test]
    fn the_fast_path_agrees_with_the_generic_decoder() {
        let busy = busy_request();
        let plain = full(envoy_headers(&[("authorization", "Bearer aaa.bbb.ccc")])).encode_to_vec();
        let repeated = repeated_keys_in_any_order();
        for wire in [&busy, &plain, &repeated] {
            assert!(scan::attributes(&wire[1..]).is_some(), "well-formed requests take the fast path");
            assert!(scan::attributes(&wire[1..2]).is_none(), "and the generic decoder's test does not");
            let decoded = CheckRequest::decode(wire.as_slice()).expect("decodes");
            assert_eq!(Ok(&decoded), generic(wire).as_ref());
        }
        assert_eq!(
            CheckRequest::decode(busy.as_slice()).unwrap().http.header_map,
            vec![b"Bearer raw.one".to_vec(), b"Bearer raw.two".to_vec()]
        );

        // Every cut, and every byte replaced by each one-byte key (tags 1 to
        // 15, every wire type), a varint's continuation and 0xff.
        let cuts = [&busy, &plain, &repeated]
            .into_iter()
            .flat_map(|wire| (0..wire.len()).map(|cut| wire[..cut].to_vec()));
        let changes = [&busy, &plain, &repeated].into_iter().flat_map(|wire| {
            (0..wire.len()).flat_map(move |position| {
                (0..=0x80).chain([0xff]).map(move |byte| {
                    let mut changed = wire.clone();
                    changed[position] = byte;
                    changed
                })
            })
        });
        let varints = [&[0xff; 9][..], &[0xff; 10], &[0xff; 11]]
            .into_iter()
            .flat_map(|prefix| [0x00, 0x01, 0x02, 0x7f].map(|last| with_varint(&[prefix, &[last]].concat())));
        let (mut inputs, mut fast_path_taken) = (0, 0);
        for input in cuts.chain(changes).chain(varints) {
            let (fast, slow) = (CheckRequest::decode(input.as_slice()), generic(&input));
            assert_eq!(fast.as_ref().ok(), slow.as_ref().ok(), "{input:02x?}");
            inputs += 1;
            fast_path_taken += usize::from(input.first() == Some(&0x0a) && scan::attributes(&input[1..]).is_some());
        }
        assert!(fast_path_taken > inputs / 2, "{fast_path_taken} of {inputs}");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let shown = format!("{:?}", CheckRequest::with_header(b"Bearer aaa.bbb.ccc"));
        assert!(!shown.contains("aaa.bbb.ccc"), "{shown}");
        assert!(shown.contains("authorization_in_headers: true"), "{shown}");
    }
}
