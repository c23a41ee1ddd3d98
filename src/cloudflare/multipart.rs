//! Reading a `multipart/form-data` body (a script download's modules).

/// The parts of a `multipart/form-data` body as `(name, content)`, `boundary` from
/// its content type. `None` when the body is not one.
pub fn multipart_parts(content_type: &str, body: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("--{boundary}").into_bytes();
    let find = |hay: &[u8], needle: &[u8], from: usize| -> Option<usize> {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + from)
    };
    let mut out = Vec::new();
    let mut at = find(body, &delimiter, 0)? + delimiter.len();
    loop {
        if body.get(at..at + 2) == Some(b"--") {
            return Some(out);
        }
        let head_end = find(body, b"\r\n\r\n", at)?;
        let head = String::from_utf8_lossy(&body[at..head_end]).to_string();
        let next = find(body, &delimiter, head_end + 4)?;
        let content_end = next.checked_sub(2).filter(|e| *e >= head_end + 4)?;
        let name = head
            .split("\r\n")
            .filter(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .flat_map(|l| l.split(';').map(str::trim).collect::<Vec<_>>())
            .find_map(|p| {
                p.strip_prefix("name=")
                    .map(|n| n.trim_matches('"').to_string())
            })?;
        out.push((name, body[head_end + 4..content_end].to_vec()));
        at = next + delimiter.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_read_by_name_and_a_body_without_a_boundary_is_none() {
        let body = b"--b1\r\nContent-Disposition: form-data; name=\"index.js\"; filename=\"index.js\"\r\nContent-Type: application/javascript+module\r\n\r\nexport default {}\r\n--b1\r\nContent-Disposition: form-data; name=\"data.bin\"\r\n\r\n\x00\x01\r\n--b1--\r\n";
        let parts = multipart_parts("multipart/form-data; boundary=\"b1\"", body).expect("read");
        assert_eq!(
            parts,
            [
                ("index.js".to_string(), b"export default {}".to_vec()),
                ("data.bin".to_string(), vec![0, 1]),
            ]
        );
        assert_eq!(multipart_parts("application/javascript", body), None);
        assert_eq!(
            multipart_parts("multipart/form-data; boundary=zz", body),
            None
        );
    }
}
