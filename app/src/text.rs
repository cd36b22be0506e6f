//! Turning a message body into what the page shows: plain text, with web links made clickable.
//!
//! Only `http://` and `https://` URLs become links, so a `javascript:` or `data:` URL stays inert text. Everything
//! is rendered through Leptos text nodes and attributes, never as HTML, so no message can inject markup.

/// A piece of a message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    Link(String),
}

/// Splits `body` into text and links.
pub fn segments(body: &str) -> Vec<Segment> {
    // Lowercased once; ASCII lowercasing keeps byte offsets, so positions in `lower` are positions in `body`.
    let lower = body.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(found) = find_link_start(&lower[pos..]) {
        let start = pos + found;
        push_text(&mut out, &body[pos..start]);
        let candidate = &body[start..];
        let end = candidate.find(char::is_whitespace).unwrap_or(candidate.len());
        let link = trim_trailing_punctuation(&candidate[..end]);
        let scheme_len = if lower[start..].starts_with("https://") { 8 } else { 7 };
        if link.len() <= scheme_len {
            // A bare "https://" is not a link: keep it as text and look further.
            push_text(&mut out, &candidate[..scheme_len]);
            pos = start + scheme_len;
            continue;
        }
        out.push(Segment::Link(link.to_owned()));
        pos = start + link.len();
    }
    push_text(&mut out, &body[pos..]);
    out
}

/// Where the first web link starts in already-lowercased text.
fn find_link_start(lower: &str) -> Option<usize> {
    [lower.find("https://"), lower.find("http://")].into_iter().flatten().min()
}

/// Sentence punctuation right after a URL belongs to the sentence; a closing parenthesis belongs to the URL only
/// when the URL opened one.
fn trim_trailing_punctuation(url: &str) -> &str {
    let mut end = url.len();
    while let Some(last) = url[..end].chars().next_back() {
        let unbalanced_paren = last == ')' && url[..end].matches('(').count() < url[..end].matches(')').count();
        if matches!(last, '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '"') || unbalanced_paren {
            end -= last.len_utf8();
        } else {
            break;
        }
    }
    &url[..end]
}

fn push_text(out: &mut Vec<Segment>, text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some(Segment::Text(previous)) = out.last_mut() {
        previous.push_str(text);
    } else {
        out.push(Segment::Text(text.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Segment {
        Segment::Text(s.to_owned())
    }

    fn link(s: &str) -> Segment {
        Segment::Link(s.to_owned())
    }

    #[test]
    fn plain_text_stays_one_piece() {
        assert_eq!(segments("hello <b>world</b>"), vec![text("hello <b>world</b>")]);
    }

    #[test]
    fn web_links_are_found_in_the_middle_of_text() {
        assert_eq!(
            segments("see https://example.com/a?b=c#d and http://x.org"),
            vec![text("see "), link("https://example.com/a?b=c#d"), text(" and "), link("http://x.org")]
        );
    }

    #[test]
    fn trailing_punctuation_is_not_part_of_a_link() {
        assert_eq!(
            segments("go to https://example.com."),
            vec![text("go to "), link("https://example.com"), text(".")]
        );
        assert_eq!(
            segments("(https://en.wikipedia.org/wiki/Rust_(language))"),
            vec![text("("), link("https://en.wikipedia.org/wiki/Rust_(language)"), text(")")]
        );
    }

    #[test]
    fn other_schemes_are_never_links() {
        assert_eq!(segments("javascript:alert(1)"), vec![text("javascript:alert(1)")]);
        assert_eq!(segments("data:text/html,<script>"), vec![text("data:text/html,<script>")]);
    }

    #[test]
    fn a_bare_scheme_is_text() {
        assert_eq!(segments("https:// nothing"), vec![text("https:// nothing")]);
        assert_eq!(segments("a https://"), vec![text("a https://")]);
        assert_eq!(segments("a https:// b HTTPS:// c"), vec![text("a https:// b HTTPS:// c")]);
        assert_eq!(segments("x HTTPS://Example.com"), vec![text("x "), link("HTTPS://Example.com")]);
    }
}
