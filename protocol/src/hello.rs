//! The Hello exchange, once for both ends: the Hello each end sends
//! ([`ours`]) and the check of the peer's ([`check`]).
//!
//! A peer's Hello is accepted when it comes from the other role and its
//! version range holds [`VERSION`], the one version this build speaks. A
//! refusal is a [`HelloError`] that carries what the peer said and knows the
//! [`ErrorCode`] to send it. Each end words a refusal the way its binary has
//! always printed it (the host speaks of "the device", the device of "host
//! …"), so what a user reads does not depend on which code path refused.

use crate::frame::VERSION;
use crate::message::{ErrorCode, Message, MessageType, Role};

/// Why a peer's Hello was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// The message is not a Hello at all.
    #[error("expected a Hello, got a {0:?} message")]
    NotHello(MessageType),
    /// The peer has the same role as this end (a host talking to a host).
    #[error("{}", wrong_role(*.expected, *.found, .agent))]
    WrongRole {
        expected: Role,
        found: Role,
        agent: String,
    },
    /// The peer's version range does not hold this build's version.
    #[error("{}", no_common_version(*.peer, *.min, *.max, *.ours, .agent))]
    Version {
        peer: Role,
        min: u8,
        max: u8,
        ours: u8,
        agent: String,
    },
}

impl HelloError {
    /// The code to send the peer in the Error that ends the session.
    pub fn code(&self) -> ErrorCode {
        match self {
            HelloError::NotHello(_) | HelloError::WrongRole { .. } => ErrorCode::Protocol,
            HelloError::Version { .. } => ErrorCode::Version,
        }
    }
}

fn wrong_role(expected: Role, found: Role, agent: &str) -> String {
    match expected {
        Role::Device => format!(
            "the peer ({agent:?}) says it is a {}, not a {}",
            name(found),
            name(expected)
        ),
        Role::Host => format!("expected a host's Hello, got one from a {found:?}"),
    }
}

fn no_common_version(peer: Role, min: u8, max: u8, ours: u8, agent: &str) -> String {
    match peer {
        Role::Device => format!(
            "the device speaks feedfs protocol versions {min} to {max}, this host speaks \
             version {ours}: install matching versions of feedfs-host and feedfs-device"
        ),
        Role::Host => format!(
            "host {agent} speaks protocol versions {min}..={max}, this device speaks {ours}"
        ),
    }
}

fn name(role: Role) -> &'static str {
    match role {
        Role::Host => "host",
        Role::Device => "device",
    }
}

/// Check the Hello of a peer that should be `expected`: the protocol
/// version both ends will speak, or why the session cannot start.
pub fn check(expected: Role, msg: &Message) -> Result<u8, HelloError> {
    let Message::Hello {
        role,
        min_version,
        max_version,
        agent,
    } = *msg
    else {
        return Err(HelloError::NotHello(msg.message_type()));
    };
    if role != expected {
        return Err(HelloError::WrongRole {
            expected,
            found: role,
            agent: agent.to_string(),
        });
    }
    if !(min_version..=max_version).contains(&VERSION) {
        return Err(HelloError::Version {
            peer: role,
            min: min_version,
            max: max_version,
            ours: VERSION,
            agent: agent.to_string(),
        });
    }
    Ok(VERSION)
}

/// The Hello this end sends as `role`, speaking exactly [`VERSION`].
pub fn ours(role: Role, agent: &str) -> Message<'_> {
    Message::Hello {
        role,
        min_version: VERSION,
        max_version: VERSION,
        agent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::FileId;

    fn hello(role: Role, min_version: u8, max_version: u8, agent: &str) -> Message<'_> {
        Message::Hello {
            role,
            min_version,
            max_version,
            agent,
        }
    }

    #[test]
    fn each_end_accepts_the_others_hello() {
        assert_eq!(
            check(Role::Device, &ours(Role::Device, "feedfs-device 1")),
            Ok(VERSION)
        );
        assert_eq!(
            check(Role::Host, &ours(Role::Host, "feedfs-host 1")),
            Ok(VERSION)
        );
        assert_eq!(
            ours(Role::Host, "h"),
            hello(Role::Host, VERSION, VERSION, "h")
        );
    }

    #[test]
    fn a_range_that_holds_our_version_is_accepted_at_our_version() {
        assert_eq!(
            check(Role::Host, &hello(Role::Host, 1, 200, "h")),
            Ok(VERSION)
        );
        assert_eq!(
            check(Role::Device, &hello(Role::Device, VERSION, u8::MAX, "d")),
            Ok(VERSION)
        );
        assert_eq!(
            check(Role::Device, &hello(Role::Device, 0, VERSION, "d")),
            Ok(VERSION)
        );
    }

    #[test]
    fn a_peer_of_our_own_role_is_a_protocol_error_worded_per_end() {
        let e = check(
            Role::Device,
            &hello(Role::Host, VERSION, VERSION, "feedfs-host 2"),
        )
        .unwrap_err();
        assert_eq!(
            e,
            HelloError::WrongRole {
                expected: Role::Device,
                found: Role::Host,
                agent: "feedfs-host 2".into()
            }
        );
        assert_eq!(e.code(), ErrorCode::Protocol);
        assert_eq!(
            e.to_string(),
            "the peer (\"feedfs-host 2\") says it is a host, not a device"
        );

        let e = check(
            Role::Host,
            &hello(Role::Device, VERSION, VERSION, "feedfs-device 2"),
        )
        .unwrap_err();
        assert_eq!(e.code(), ErrorCode::Protocol);
        assert_eq!(
            e.to_string(),
            "expected a host's Hello, got one from a Device"
        );
    }

    #[test]
    fn a_range_without_our_version_is_a_version_error_carrying_the_numbers() {
        let below = VERSION - 1;
        let e = check(Role::Device, &hello(Role::Device, 1, below, "d")).unwrap_err();
        assert_eq!(
            e,
            HelloError::Version {
                peer: Role::Device,
                min: 1,
                max: below,
                ours: VERSION,
                agent: "d".into()
            }
        );
        assert_eq!(e.code(), ErrorCode::Version);
        assert_eq!(
            e.to_string(),
            format!(
                "the device speaks feedfs protocol versions 1 to {below}, this host speaks \
                 version {VERSION}: install matching versions of feedfs-host and feedfs-device"
            )
        );

        let above = VERSION + 1;
        let e = check(Role::Host, &hello(Role::Host, above, 9, "feedfs-host 7")).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Version);
        assert_eq!(
            e.to_string(),
            format!("host feedfs-host 7 speaks protocol versions {above}..=9, this device speaks {VERSION}")
        );
    }

    #[test]
    fn an_empty_range_is_a_version_error() {
        let e = check(Role::Host, &hello(Role::Host, VERSION, VERSION - 1, "h")).unwrap_err();
        assert!(
            matches!(e, HelloError::Version { min, max, .. } if min == VERSION && max == VERSION - 1)
        );
    }

    #[test]
    fn the_role_is_checked_before_the_version() {
        let e = check(Role::Device, &hello(Role::Host, 0, 0, "h")).unwrap_err();
        assert!(matches!(e, HelloError::WrongRole { .. }), "{e:?}");
    }

    #[test]
    fn another_message_is_not_a_hello() {
        let demand = Message::Demand {
            file: FileId(1),
            first: 0,
            count: 1,
            again: false,
        };
        let e = check(Role::Device, &demand).unwrap_err();
        assert_eq!(e, HelloError::NotHello(MessageType::Demand));
        assert_eq!(e.code(), ErrorCode::Protocol);
        assert_eq!(e.to_string(), "expected a Hello, got a Demand message");
    }
}
