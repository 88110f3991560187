//! The USB binding as bytes: the numbers a feedfs device shows on the bus,
//! the FunctionFS descriptor and string blobs its daemon writes to `ep0`,
//! the `ep0` event records it reads back, and the zero-length-packet rule
//! both ends follow. No I/O; `docs/protocol.md` section 7 describes it.
//!
//! Discovery goes by the interface's class, subclass and protocol, never by
//! vendor and product id alone, so a device with another product id (a
//! phone's own) is still found.

/// pid.codes, the open vendor id for open-source hardware and tests.
pub const VENDOR_ID: u16 = 0x1209;
/// A pid.codes test product id; only the default of a gadget feedfs sets up.
pub const PRODUCT_ID: u16 = 0x0001;
/// Vendor-specific interface class.
pub const INTERFACE_CLASS: u8 = 0xff;
/// `'F'`: the feedfs interface among vendor-specific ones.
pub const INTERFACE_SUBCLASS: u8 = 0x46;
/// The feedfs USB binding's version (the frames inside carry their own).
pub const INTERFACE_PROTOCOL: u8 = 0x01;
/// The interface's name (string descriptor 1 of the function).
pub const INTERFACE_NAME: &str = "feedfs";

/// Bytes per bulk transfer: what the host writes at most in one transfer,
/// and what both sides ask for in every read. Large enough to reach the link's
/// rate, small enough that a demanded block waits behind little stream data
/// (one transfer in flight plus one being filled: 512 KiB, about 10 ms at
/// USB 2.0's real rate).
pub const TRANSFER_SIZE: usize = 256 * 1024;

/// Smallest max packet size of a bulk endpoint (full speed). A ZLP sent
/// after every transfer that is a multiple of this is always enough.
pub const MIN_MAX_PACKET: usize = 64;

/// Whether a bulk transfer of `len` bytes must be followed by a zero-length
/// packet. The receiver reads in requests of [`TRANSFER_SIZE`] bytes, and a
/// read ends only at a short packet or when its buffer is full: a transfer
/// whose last read is left partly filled by whole packets ends with
/// neither, so it needs the ZLP. One that fills its last read exactly needs
/// none (and must not get one: in a strict request-and-answer exchange the
/// receiver would not read it until the sender had read the answer).
pub fn needs_zlp(len: usize, max_packet: usize) -> bool {
    let tail = len % TRANSFER_SIZE;
    tail != 0 && tail.is_multiple_of(max_packet.max(1))
}

const DESCRIPTORS_MAGIC_V2: u32 = 3;
const STRINGS_MAGIC: u32 = 2;
const HAS_FS_DESC: u32 = 1;
const HAS_HS_DESC: u32 = 2;
const HAS_SS_DESC: u32 = 4;

const DT_INTERFACE: u8 = 4;
const DT_ENDPOINT: u8 = 5;
const DT_SS_ENDPOINT_COMP: u8 = 0x30;
const DIR_IN: u8 = 0x80;
const XFER_BULK: u8 = 2;

fn interface(out: &mut Vec<u8>) {
    out.extend_from_slice(&[
        9,
        DT_INTERFACE,
        0, // bInterfaceNumber (FunctionFS renumbers it)
        0, // bAlternateSetting
        2, // bNumEndpoints
        INTERFACE_CLASS,
        INTERFACE_SUBCLASS,
        INTERFACE_PROTOCOL,
        1, // iInterface: the first string written after the descriptors
    ]);
}

fn endpoint(out: &mut Vec<u8>, address: u8, max_packet: u16) {
    let [lo, hi] = max_packet.to_le_bytes();
    out.extend_from_slice(&[7, DT_ENDPOINT, address, XFER_BULK, lo, hi, 0]);
}

fn ss_companion(out: &mut Vec<u8>) {
    // bMaxBurst 0 (one packet per burst), no streams, no bytes per interval.
    out.extend_from_slice(&[6, DT_SS_ENDPOINT_COMP, 0, 0, 0, 0]);
}

/// The FunctionFS descriptor blob (format v2) for one interface with a bulk
/// OUT endpoint (`ep1`, host to device) and a bulk IN endpoint (`ep2`), at
/// full, high and SuperSpeed.
pub fn ffs_descriptors() -> Vec<u8> {
    let mut body = Vec::new();
    for (max_packet, ss) in [(64u16, false), (512, false), (1024, true)] {
        interface(&mut body);
        endpoint(&mut body, 1, max_packet);
        if ss {
            ss_companion(&mut body);
        }
        endpoint(&mut body, 2 | DIR_IN, max_packet);
        if ss {
            ss_companion(&mut body);
        }
    }
    let mut out = Vec::with_capacity(24 + body.len());
    out.extend_from_slice(&DESCRIPTORS_MAGIC_V2.to_le_bytes());
    out.extend_from_slice(&((24 + body.len()) as u32).to_le_bytes());
    out.extend_from_slice(&(HAS_FS_DESC | HAS_HS_DESC | HAS_SS_DESC).to_le_bytes());
    // Descriptor counts: full speed, high speed, SuperSpeed.
    for count in [3u32, 3, 5] {
        out.extend_from_slice(&count.to_le_bytes());
    }
    out.extend_from_slice(&body);
    out
}

/// The FunctionFS strings blob: one language (US English) with one string,
/// the interface's name.
pub fn ffs_strings() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0x0409u16.to_le_bytes());
    body.extend_from_slice(INTERFACE_NAME.as_bytes());
    body.push(0);
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&STRINGS_MAGIC.to_le_bytes());
    out.extend_from_slice(&((16 + body.len()) as u32).to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // strings per language
    out.extend_from_slice(&1u32.to_le_bytes()); // languages
    out.extend_from_slice(&body);
    out
}

/// Size of one record read from `ep0`.
pub const FFS_EVENT_LEN: usize = 12;

/// What FunctionFS reports on `ep0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfsEvent {
    Bind,
    Unbind,
    /// The host configured the device: the bulk endpoints work.
    Enable,
    /// The host went away or reset the device: bulk I/O fails with ESHUTDOWN.
    Disable,
    /// A control request for the interface; `device_to_host` from bit 7 of
    /// bmRequestType, `length` from wLength.
    Setup {
        device_to_host: bool,
        length: u16,
    },
    Suspend,
    Resume,
    Unknown(u8),
}

impl FfsEvent {
    /// Parse one `struct usb_functionfs_event`: 8 bytes of setup packet,
    /// then the type byte and 3 bytes of padding.
    pub fn parse(raw: &[u8; FFS_EVENT_LEN]) -> FfsEvent {
        match raw[8] {
            0 => FfsEvent::Bind,
            1 => FfsEvent::Unbind,
            2 => FfsEvent::Enable,
            3 => FfsEvent::Disable,
            4 => FfsEvent::Setup {
                device_to_host: raw[0] & DIR_IN != 0,
                length: u16::from_le_bytes([raw[6], raw[7]]),
            },
            5 => FfsEvent::Suspend,
            6 => FfsEvent::Resume,
            t => FfsEvent::Unknown(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zlp_only_after_whole_packets() {
        assert!(!needs_zlp(0, 512));
        assert!(needs_zlp(512, 512));
        assert!(needs_zlp(1024, 512));
        assert!(!needs_zlp(513, 512));
        assert!(!needs_zlp(512, 1024));
        assert!(needs_zlp(64, MIN_MAX_PACKET));
        // A transfer that fills the receiver's reads exactly needs none.
        assert!(!needs_zlp(TRANSFER_SIZE, 1024));
        assert!(!needs_zlp(3 * TRANSFER_SIZE, 512));
        assert!(needs_zlp(TRANSFER_SIZE + 512, 512));
        assert!(needs_zlp(TRANSFER_SIZE - 1024, 1024));
    }

    #[test]
    fn descriptors_blob_layout() {
        let d = ffs_descriptors();
        let word = |at: usize| u32::from_le_bytes(d[at..at + 4].try_into().unwrap());
        assert_eq!(word(0), 3);
        assert_eq!(word(4) as usize, d.len());
        assert_eq!(word(8), 7);
        assert_eq!((word(12), word(16), word(20)), (3, 3, 5));
        // 3 x (9 + 7 + 7) + (9 + 7 + 6 + 7 + 6) bytes of descriptors.
        assert_eq!(d.len(), 24 + 23 * 2 + 35);
        // Full speed: the interface, then OUT ep 1 and IN ep 2 of 64 bytes.
        assert_eq!(&d[24..33], &[9, 4, 0, 0, 2, 0xff, 0x46, 0x01, 1]);
        assert_eq!(&d[33..40], &[7, 5, 0x01, 2, 64, 0, 0]);
        assert_eq!(&d[40..47], &[7, 5, 0x82, 2, 64, 0, 0]);
        // High speed: 512-byte packets.
        assert_eq!(&d[56..63], &[7, 5, 0x01, 2, 0, 2, 0]);
        // SuperSpeed: 1024-byte packets, each endpoint with its companion.
        assert_eq!(&d[79..86], &[7, 5, 0x01, 2, 0, 4, 0]);
        assert_eq!(&d[86..92], &[6, 0x30, 0, 0, 0, 0]);
        assert_eq!(&d[92..99], &[7, 5, 0x82, 2, 0, 4, 0]);
    }

    #[test]
    fn strings_blob_layout() {
        let s = ffs_strings();
        assert_eq!(
            s,
            [
                &[2, 0, 0, 0, 25, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0x09, 0x04][..],
                b"feedfs\0"
            ]
            .concat()
        );
    }

    #[test]
    fn events_parse_totally() {
        let mut raw = [0u8; FFS_EVENT_LEN];
        raw[8] = 2;
        assert_eq!(FfsEvent::parse(&raw), FfsEvent::Enable);
        raw[8] = 3;
        assert_eq!(FfsEvent::parse(&raw), FfsEvent::Disable);
        raw[0] = 0xc1;
        raw[6] = 4;
        raw[8] = 4;
        assert_eq!(
            FfsEvent::parse(&raw),
            FfsEvent::Setup {
                device_to_host: true,
                length: 4
            }
        );
        raw[8] = 99;
        assert_eq!(FfsEvent::parse(&raw), FfsEvent::Unknown(99));
    }
}
