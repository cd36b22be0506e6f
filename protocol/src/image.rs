//! Images people share: which kinds are accepted, how large they may be, and the check both sides run before one
//! travels (the browser, to explain a refusal at once; the server, because it trusts no client).

use serde::{Deserialize, Serialize};

/// The largest image accepted, in bytes (2 MiB).
pub const MAX_IMAGE_BYTES: usize = 2 * 1024 * 1024;

/// The kinds of image accepted. Raster formats that every browser shows; never SVG, which can carry scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ImageKind {
    #[serde(rename = "image/png")]
    Png,
    #[serde(rename = "image/jpeg")]
    Jpeg,
    #[serde(rename = "image/gif")]
    Gif,
    #[serde(rename = "image/webp")]
    Webp,
}

impl ImageKind {
    pub const ALL: [ImageKind; 4] = [ImageKind::Png, ImageKind::Jpeg, ImageKind::Gif, ImageKind::Webp];

    /// Its media type, as in `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            ImageKind::Png => "image/png",
            ImageKind::Jpeg => "image/jpeg",
            ImageKind::Gif => "image/gif",
            ImageKind::Webp => "image/webp",
        }
    }

    /// Its name in words: "PNG", "JPEG", "GIF", "WebP".
    pub fn name(self) -> &'static str {
        match self {
            ImageKind::Png => "PNG",
            ImageKind::Jpeg => "JPEG",
            ImageKind::Gif => "GIF",
            ImageKind::Webp => "WebP",
        }
    }

    /// The kind a `Content-Type` (or a browser file's `type`) names.
    pub fn from_content_type(content_type: &str) -> Result<Self, ImageError> {
        let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|kind| kind.content_type() == essence)
            .ok_or_else(|| ImageError::UnsupportedType(content_type.chars().take(100).collect()))
    }

    /// The kind the bytes themselves say they are (their signature), whatever they were called.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(ImageKind::Png),
            [0xFF, 0xD8, 0xFF, ..] => Some(ImageKind::Jpeg),
            [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(ImageKind::Gif),
            [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some(ImageKind::Webp),
            _ => None,
        }
    }
}

impl std::fmt::Display for ImageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.content_type())
    }
}

/// Why an image is refused, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("“{0}” is not an image type Causerie takes: send a PNG, JPEG, GIF or WebP image.")]
    UnsupportedType(String),
    #[error("That image is {}; the limit is {}. Send a smaller one.", size_in_words(*.size), size_in_words(MAX_IMAGE_BYTES))]
    TooLarge { size: usize },
    #[error("That file is empty.")]
    Empty,
    #[error("That file says it is a {} image, but its contents are not a PNG, JPEG, GIF or WebP image.", .declared.name())]
    NotAnImage { declared: ImageKind },
    #[error("That file says it is a {} image, but its contents are a {} image.", .declared.name(), .actual.name())]
    Mismatch { declared: ImageKind, actual: ImageKind },
}

/// Checks an image before it is sent or stored: size within [`MAX_IMAGE_BYTES`], and contents of the kind it
/// claims to be.
pub fn check_image(declared: ImageKind, bytes: &[u8]) -> Result<ImageKind, ImageError> {
    check_image_size(bytes.len())?;
    match ImageKind::sniff(bytes) {
        Some(actual) if actual == declared => Ok(actual),
        Some(actual) => Err(ImageError::Mismatch { declared, actual }),
        None => Err(ImageError::NotAnImage { declared }),
    }
}

/// The size check alone, for before the bytes are read.
pub fn check_image_size(size: usize) -> Result<(), ImageError> {
    match size {
        0 => Err(ImageError::Empty),
        size if size > MAX_IMAGE_BYTES => Err(ImageError::TooLarge { size }),
        _ => Ok(()),
    }
}

/// `numerator / denominator` with one decimal, rounded half up: `tenths(1250, 1000)` is "1.3".
///
/// Integer arithmetic on purpose: formatting a float pulls the whole float printer into the browser's WASM.
pub fn tenths(numerator: u64, denominator: u64) -> String {
    let denominator = denominator.max(1);
    let tenths = (u128::from(numerator) * 10 + u128::from(denominator) / 2) / u128::from(denominator);
    format!("{}.{}", tenths / 10, tenths % 10)
}

/// "2.0 MB", "512 KB", "12 bytes".
pub fn size_in_words(bytes: usize) -> String {
    const KIB: usize = 1024;
    match bytes {
        b if b >= KIB * KIB => format!("{} MB", tenths(b as u64, (KIB * KIB) as u64)),
        b if b >= KIB => format!("{} KB", b / KIB),
        b => format!("{b} bytes"),
    }
}

/// An image in a stored message: where to fetch it, and what to expect there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRef {
    /// A path on the server (`/media/<id>`), served with its content type and cached for good.
    pub url: String,
    pub content_type: ImageKind,
    /// In bytes.
    pub size: u64,
    /// In pixels, so that a page can reserve its place before it loads.
    pub width: u32,
    pub height: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0];
    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0];

    #[test]
    fn an_image_is_known_by_its_contents_not_its_name() {
        assert_eq!(check_image(ImageKind::Png, PNG), Ok(ImageKind::Png));
        assert_eq!(
            check_image(ImageKind::Png, JPEG),
            Err(ImageError::Mismatch { declared: ImageKind::Png, actual: ImageKind::Jpeg })
        );
        let err = check_image(ImageKind::Gif, b"<svg onload=alert(1)>").unwrap_err();
        assert_eq!(
            err.to_string(),
            "That file says it is a GIF image, but its contents are not a PNG, JPEG, GIF or WebP image."
        );
        assert_eq!(ImageKind::sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(ImageKind::Webp));
        assert_eq!(ImageKind::sniff(b"GIF89a"), Some(ImageKind::Gif));
    }

    #[test]
    fn tenths_round_half_up_without_floats() {
        assert_eq!(tenths(1250, 1000), "1.3");
        assert_eq!(tenths(1249, 1000), "1.2");
        assert_eq!(tenths(0, 1000), "0.0");
        assert_eq!(tenths(3 * 1024 * 1024, 1024 * 1024), "3.0");
        assert_eq!(tenths(7, 0), "7.0", "a zero denominator counts as one");
    }

    #[test]
    fn empty_and_oversized_images_are_refused_with_their_size_in_words() {
        assert_eq!(check_image(ImageKind::Png, &[]), Err(ImageError::Empty));
        let err = check_image_size(3 * 1024 * 1024).unwrap_err();
        assert_eq!(err.to_string(), "That image is 3.0 MB; the limit is 2.0 MB. Send a smaller one.");
        assert!(check_image_size(MAX_IMAGE_BYTES + 1).is_err());
        assert_eq!(check_image_size(MAX_IMAGE_BYTES), Ok(()));
    }

    #[test]
    fn only_raster_types_are_accepted_whatever_their_case_or_parameters() {
        assert_eq!(ImageKind::from_content_type("IMAGE/PNG"), Ok(ImageKind::Png));
        assert_eq!(ImageKind::from_content_type("image/jpeg; charset=binary"), Ok(ImageKind::Jpeg));
        let err = ImageKind::from_content_type("image/svg+xml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "“image/svg+xml” is not an image type Causerie takes: send a PNG, JPEG, GIF or WebP image."
        );
    }

    #[test]
    fn image_kinds_travel_as_media_types() {
        assert_eq!(serde_json::to_string(&ImageKind::Webp).unwrap(), "\"image/webp\"");
        assert!(serde_json::from_str::<ImageKind>("\"image/svg+xml\"").is_err());
    }
}
