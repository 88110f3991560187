//! The frame header's fixed bytes, one distinct error per fault, the
//! recovery each error forces, and the type codes.

use super::*;

fn frame(ty: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    emit(&mut v, ty, |o| o.extend_from_slice(payload));
    v
}

#[test]
fn fixed_header_bytes() {
    let f = frame(0x0b, &[0]);
    assert_eq!(&f[..12], b"FDFS\x04\x0b\x00\x00\x01\x00\x00\x00");
    let crc = crc32fast::hash(&[&f[..12], &[0u8][..]].concat());
    assert_eq!(LE::read_u32(&f[12..16]), crc);
    let checked = Frame::new_checked(&f[..]).unwrap();
    assert_eq!(checked.payload(), &[0]);
}

#[test]
fn each_fault_has_its_own_error() {
    let good = frame(0x0b, &[0]);
    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(matches!(
        Frame::new_checked(&bad[..]),
        Err(FrameError::BadMagic { .. })
    ));
    // Another version with a valid checksum is a version error...
    let mut other = good.clone();
    other[4] = 9;
    let crc = crc32fast::hash(&[&other[..12], &other[16..]].concat());
    other[12..16].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        Frame::new_checked(&other[..]).unwrap_err(),
        FrameError::UnsupportedVersion {
            found: 9,
            supported: VERSION
        }
    );
    // ...while a damaged version byte is damage.
    let mut bad = good.clone();
    bad[4] = 9;
    assert!(matches!(
        Frame::new_checked(&bad[..]),
        Err(FrameError::BadChecksum { .. })
    ));
    let mut bad = good.clone();
    bad[16] ^= 1;
    assert!(matches!(
        Frame::new_checked(&bad[..]),
        Err(FrameError::BadChecksum { .. })
    ));
    let mut bad = good.clone();
    LE::write_u32(&mut bad[8..12], MAX_PAYLOAD + 1);
    assert_eq!(
        Frame::new_checked(&bad[..]).unwrap_err(),
        FrameError::Oversized {
            len: MAX_PAYLOAD + 1,
            max: MAX_PAYLOAD
        }
    );
    assert_eq!(
        Frame::new_checked(&good[..10]).unwrap_err(),
        FrameError::Truncated {
            needed: 16,
            available: 10
        }
    );
    assert_eq!(
        Frame::new_checked(&good[..16]).unwrap_err(),
        FrameError::Truncated {
            needed: 17,
            available: 16
        }
    );
    let unknown = frame(0x7f, &[]);
    let f = Frame::new_checked(&unknown[..]).unwrap();
    assert_eq!(f.message_type().unwrap_err(), FrameError::UnknownType(0x7f));
}

#[test]
fn type_codes_convert_totally() {
    for v in 0..=u8::MAX {
        match MessageType::try_from(v) {
            Ok(ty) => assert_eq!(ty as u8, v),
            Err(other) => {
                assert_eq!(other, v);
                assert!(v == 0 || v > 0x0b, "{v:#04x} is a known code");
            }
        }
    }
    assert_eq!(MessageType::try_from(0x07), Ok(MessageType::Run));
}

#[test]
fn recovery_is_decided_per_error() {
    assert_eq!(FrameError::UnknownType(1).recovery(), Recovery::Skip);
    assert_eq!(
        FrameError::BadChecksum {
            expected: 0,
            actual: 1
        }
        .recovery(),
        Recovery::Resync
    );
    assert_eq!(
        FrameError::UnsupportedVersion {
            found: 2,
            supported: 1
        }
        .recovery(),
        Recovery::Fatal
    );
    assert_eq!(
        FrameError::Truncated {
            needed: 2,
            available: 1
        }
        .recovery(),
        Recovery::Reconnect
    );
}
