//! Which legs a recording takes and on which output channel: the only
//! place participant selection and channels by role are decided, for the
//! daemon and `recengine pcap` alike.
//!
//! Channels go by role, never by order of arrival: mono puts every
//! selected leg on channel 0; dual gives the caller channel 0, the callee
//! channel 1 and further parties (conference participants) channels 2, 3, …
//! in leg order, with at least two channels so a one-party dual recording
//! still has the other party's (silent) side.

use thiserror::Error;

use crate::format::Channels;
use crate::mixer::MixInput;

/// A party's role in a call.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Caller,
    Callee,
    Participant,
}

/// Which legs to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Caller,
    Callee,
    /// These legs, by id, in this order.
    Legs(Vec<String>),
}

/// A leg as the plan sees it.
#[derive(Debug, Clone, Copy)]
pub struct PlanLeg<'a> {
    pub id: &'a str,
    pub role: Role,
}

/// The legs a recording mixes and its channel count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPlan {
    /// Track (= leg index) and output channel of each selected leg.
    pub inputs: Vec<MixInput>,
    pub channel_count: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    #[error("participant[{index}]: no leg {id:?} in this call")]
    UnknownLeg { index: usize, id: String },
    #[error("participant[{index}]: leg {id:?} is named twice")]
    NamedTwice { index: usize, id: String },
    #[error("participant: the call has no {0} leg")]
    NoneSelected(&'static str),
}

fn rank(role: Role) -> u8 {
    match role {
        Role::Caller => 0,
        Role::Callee => 1,
        Role::Participant => 2,
    }
}

/// Plans a recording of `legs` (in leg order).
pub fn plan(
    legs: &[PlanLeg<'_>],
    selection: &Selection,
    channels: Channels,
) -> Result<ChannelPlan, PlanError> {
    let with_role =
        |role: Role| -> Vec<usize> { (0..legs.len()).filter(|&i| legs[i].role == role).collect() };
    let (selected, what) = match selection {
        Selection::All => ((0..legs.len()).collect(), "recorded"),
        Selection::Caller => (with_role(Role::Caller), "caller"),
        Selection::Callee => (with_role(Role::Callee), "callee"),
        Selection::Legs(ids) => {
            let mut v: Vec<usize> = Vec::with_capacity(ids.len());
            for (index, id) in ids.iter().enumerate() {
                let i =
                    legs.iter()
                        .position(|l| l.id == id)
                        .ok_or_else(|| PlanError::UnknownLeg {
                            index,
                            id: id.clone(),
                        })?;
                if v.contains(&i) {
                    return Err(PlanError::NamedTwice {
                        index,
                        id: id.clone(),
                    });
                }
                v.push(i);
            }
            (v, "named")
        }
    };
    if selected.is_empty() {
        return Err(PlanError::NoneSelected(what));
    }
    let inputs: Vec<MixInput> = match channels {
        Channels::Mono => selected
            .iter()
            .map(|&track| MixInput { track, channel: 0 })
            .collect(),
        Channels::Dual => {
            let mut order = selected;
            order.sort_by_key(|&i| (rank(legs[i].role), i));
            order
                .into_iter()
                .enumerate()
                .map(|(channel, track)| MixInput {
                    track,
                    channel: channel as u16,
                })
                .collect()
        }
    };
    let channel_count = match channels {
        Channels::Mono => 1,
        Channels::Dual => (inputs.len() as u16).max(2),
    };
    Ok(ChannelPlan {
        inputs,
        channel_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legs(roles: &[Role]) -> Vec<(String, Role)> {
        roles
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("leg-{i}"), *r))
            .collect()
    }

    fn run(roles: &[Role], s: Selection, ch: Channels) -> Result<Vec<(usize, u16)>, PlanError> {
        let owned = legs(roles);
        let view: Vec<PlanLeg<'_>> = owned
            .iter()
            .map(|(id, role)| PlanLeg { id, role: *role })
            .collect();
        plan(&view, &s, ch).map(|p| p.inputs.iter().map(|i| (i.track, i.channel)).collect())
    }

    use Role::{Callee, Caller, Participant};

    #[test]
    fn one_party() {
        assert_eq!(
            run(&[Caller], Selection::All, Channels::Mono),
            Ok(vec![(0, 0)])
        );
        assert_eq!(
            run(&[Caller], Selection::All, Channels::Dual),
            Ok(vec![(0, 0)])
        );
        assert_eq!(
            run(&[Caller], Selection::Callee, Channels::Dual),
            Err(PlanError::NoneSelected("callee"))
        );
    }

    #[test]
    fn two_parties_by_role_not_by_order() {
        // The callee's leg came first: it still gets the right channel.
        assert_eq!(
            run(&[Callee, Caller], Selection::All, Channels::Dual),
            Ok(vec![(1, 0), (0, 1)])
        );
        assert_eq!(
            run(&[Callee, Caller], Selection::All, Channels::Mono),
            Ok(vec![(0, 0), (1, 0)])
        );
        // One party of two, dual: on its own channel 0 of two.
        let owned = legs(&[Caller, Callee]);
        let view: Vec<PlanLeg<'_>> = owned
            .iter()
            .map(|(id, role)| PlanLeg { id, role: *role })
            .collect();
        let p = plan(&view, &Selection::Callee, Channels::Dual).unwrap();
        assert_eq!(p.channel_count, 2);
        assert_eq!(
            p.inputs,
            vec![MixInput {
                track: 1,
                channel: 0
            }]
        );
    }

    #[test]
    fn five_parties_of_a_conference() {
        let roles = [Participant, Callee, Participant, Caller, Participant];
        assert_eq!(
            run(&roles, Selection::All, Channels::Dual),
            Ok(vec![(3, 0), (1, 1), (0, 2), (2, 3), (4, 4)])
        );
        assert_eq!(
            run(
                &roles,
                Selection::Legs(vec!["leg-4".into(), "leg-0".into()]),
                Channels::Dual
            ),
            Ok(vec![(0, 0), (4, 1)])
        );
        assert_eq!(
            run(
                &roles,
                Selection::Legs(vec!["leg-4".into(), "leg-4".into()]),
                Channels::Mono
            ),
            Err(PlanError::NamedTwice {
                index: 1,
                id: "leg-4".into()
            })
        );
        assert!(matches!(
            run(&roles, Selection::Legs(vec!["nope".into()]), Channels::Mono),
            Err(PlanError::UnknownLeg { index: 0, .. })
        ));
    }
}
