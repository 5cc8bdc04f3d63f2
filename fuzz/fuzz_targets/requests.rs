//! Request decoding as the server does it: bytes (the first picks the
//! method) decoded by prost into that method's request, then parsed into
//! domain types by the handlers' own conversions. Nothing may panic.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((&method, message)) = data.split_first() {
        token_authority::grpc::fuzzing::parse_request(method, message);
    }
});
