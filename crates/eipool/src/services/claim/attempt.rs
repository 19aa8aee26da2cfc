//! One candidate: the driver of the attempt machine ([`crate::pure::attempt`]). It performs the
//! call the machine asks for (Redis through [`super::coordination`], EC2, the node's view, a
//! sleep on one of the two budgets), feeds the answer back with the time, and decides nothing.
//! Whatever happens, nothing of ours is left on the candidate unless we won it, or another
//! claim of this interface took over (the interface lease): the machine sees to that.

use rand::Rng;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::cleanup;
use super::coordination::{Leasing, PaceClass, Slot};
use super::validate;
use super::{Means, Stop};
use crate::adapters::aws::{Ec2Error, Imds};
use crate::adapters::redis::Lease;
use crate::pure::address::Address;
use crate::pure::attempt::{
    self as machine, AssociateAnswer, Call, GiveBack, Input, Leased, Outcome, Why,
};
use crate::pure::identity::Identity;
use crate::pure::ids::AssociationId;
use crate::support::output::Claimed;

/// What trying one candidate came to: won, or how it ended without a win (the passes machine
/// weighs that, [`crate::pure::passes`]).
#[derive(Debug)]
pub(super) enum Attempt {
    Won(Claimed),
    Done(Outcome),
}

/// Try to win one candidate. Returns `Err` only to stop the whole claim (deadline, signal,
/// fatal, the interface lease lost), after giving back anything taken for this candidate.
pub(super) async fn attempt(
    m: &mut Means,
    cand: &Address,
    me: &Identity,
    suspect_ours: bool,
) -> Result<Attempt, Stop> {
    let alloc = &cand.allocation_id;
    let epoch = Instant::now();
    let mut machine = machine::Attempt::new(
        cand.clone(),
        me.clone(),
        suspect_ours,
        m.slot.is_some(),
        m.herd,
        m.ec2.call_timeout(),
    );
    // What the calls took, for the calls that give it back.
    let mut lease: Option<Lease> = None;
    let mut slot: Option<Slot> = None;
    // Why the claim stops, once a call said so: the machine cleans up, then ends with it.
    let mut stop: Option<Stop> = None;
    // What AssociateAddress answered, and the node's view, once asked.
    let mut answered: Option<AssociationId> = None;
    let mut imds: Option<Imds> = None;
    let mut input = Input::Start;
    loop {
        let call = machine.step(input, epoch.elapsed());
        input = match call {
            Call::TakeLease => match m.coord.take_lease(&m.work, alloc, me).await {
                Ok(Leasing::Got(l)) => {
                    lease = Some(l);
                    Input::Leased(Leased::Got)
                }
                Ok(Leasing::WithoutRedis) => Input::Leased(Leased::WithoutRedis),
                Ok(Leasing::Busy) => Input::Leased(Leased::Busy),
                Ok(Leasing::Masked(age)) => Input::Leased(Leased::Masked(age)),
                Ok(Leasing::Unavailable) => Input::Leased(Leased::Unavailable),
                Err(s) => stopped(&mut stop, s),
            },
            Call::Pace { renewing, waited } => {
                let waited = if waited { m.slot.take() } else { None };
                let paced = match waited {
                    Some(s) => Ok(Some(s)),
                    None => {
                        let renewing = lease.as_mut().filter(|_| renewing);
                        m.coord.pace(&m.work, PaceClass::Mutating, renewing).await
                    }
                };
                match paced {
                    Ok(s) => {
                        let got = s.is_some();
                        slot = s;
                        Input::Paced(got)
                    }
                    Err(s) => stopped(&mut stop, s),
                }
            }
            Call::Renew => {
                let l = lease
                    .as_mut()
                    .expect("the machine renews only a lease it took");
                match m.coord.renew(&m.work, l).await {
                    Ok(held) => {
                        let left = l.valid_until.saturating_duration_since(Instant::now());
                        Input::Renewed { held, left }
                    }
                    Err(s) => stopped(&mut stop, s),
                }
            }
            Call::StillHoldsInterface => match m.coord.still_holds_interface(&m.work).await {
                Ok(held) => Input::Interface(held),
                Err(s) => stopped(&mut stop, s),
            },
            // The claim is stopping already: a failure here keeps the first reason.
            Call::MayGiveBack => match m.coord.still_holds_interface(&m.cleanup).await {
                Ok(true) => Input::Interface(true),
                Ok(false) => {
                    warn!(allocation_id = %alloc, "the interface lease ran out while this claim was stopping: leaving what our private IP shows to the claim that holds it now, or to a re-run or `eipool gc`");
                    Input::Interface(false)
                }
                Err(_) => Input::Stopped,
            },
            Call::Associate => {
                match m
                    .work
                    .bounded(m.ec2.associate(alloc, &me.eni, me.private_ip))
                    .await
                {
                    Ok(answer) => Input::Associated(match answer {
                        Ok(assoc) => {
                            answered = Some(assoc.clone());
                            AssociateAnswer::Ok(assoc)
                        }
                        Err(Ec2Error::AlreadyAssociated(_)) => AssociateAnswer::AlreadyAssociated,
                        Err(Ec2Error::AllocationNotFound(_)) => AssociateAnswer::NotFound,
                        Err(e) if e.is_transient() => {
                            m.work.note(&e);
                            AssociateAnswer::Passing {
                                maybe_applied: e.maybe_applied(),
                                throttled: matches!(e, Ec2Error::Throttled { .. }),
                            }
                        }
                        Err(e) => {
                            stopped(&mut stop, Stop::Fatal(e.into()));
                            AssociateAnswer::Refused
                        }
                    }),
                    Err(interrupt) => stopped(&mut stop, interrupt.into()),
                }
            }
            Call::Throttled => {
                let s = slot.as_ref().expect("throttled in a turn of the pace");
                match m.coord.throttled(&m.work, s).await {
                    Ok(alone) => Input::Throttled { alone },
                    Err(s) => stopped(&mut stop, s),
                }
            }
            Call::Sleep(pause) => {
                let wait = pause.duration(rand::rng().random());
                if pause.on_cleanup() {
                    match m.cleanup.sleep(wait).await {
                        Ok(()) => Input::Slept,
                        Err(_) => Input::Stopped,
                    }
                } else {
                    match m.work.sleep(wait).await {
                        Ok(()) => Input::Slept,
                        Err(interrupt) => stopped(&mut stop, interrupt.into()),
                    }
                }
            }
            Call::Describe => {
                let ec2 = m.ec2.clone();
                match m
                    .coord
                    .described(
                        &m.work,
                        PaceClass::Describe,
                        "look at the candidate",
                        || ec2.describe_address(alloc),
                    )
                    .await
                {
                    Ok((seen, _)) => Input::Seen(seen),
                    Err(s) => stopped(&mut stop, s),
                }
            }
            Call::LookOnNode => {
                let mac = me.mac.as_deref().expect("the node's view needs the MAC");
                // One client per attempt: it keeps its IMDSv2 session token between looks.
                let imds = imds.get_or_insert_with(Imds::new);
                match m.work.bounded(imds.ipv4_associations(mac)).await {
                    Ok(Ok(pairs)) => {
                        Input::OnNode(Some(pairs.contains(&(cand.public_ip, me.private_ip))))
                    }
                    Ok(Err(e)) => {
                        debug!(error = %e, "IMDSv2 did not answer; validating with EC2");
                        Input::OnNode(None)
                    }
                    Err(interrupt) => stopped(&mut stop, interrupt.into()),
                }
            }
            Call::MarkTaken => {
                debug!(allocation_id = %alloc, "taken (Resource.AlreadyAssociated)");
                m.coord.mark_taken(alloc).await;
                Input::Done
            }
            Call::LookForOurs => match cleanup::look_for_ours(m, alloc).await {
                Some(seen) => Input::Seen(seen),
                None => Input::Stopped,
            },
            Call::Disassociate(assoc, why) => {
                match why {
                    GiveBack::Elsewhere => {
                        warn!(allocation_id = %alloc, "validation found the address held elsewhere; moving on")
                    }
                    GiveBack::Displaced => {
                        warn!(allocation_id = %alloc, "our association was replaced by another on this private IP; looking again at what it holds")
                    }
                    GiveBack::RolledBack | GiveBack::Undo => {}
                }
                cleanup::disassociate_quietly(m, &assoc).await;
                Input::Done
            }
            Call::ReleaseLease {
                forget_intent,
                lease_too_short,
            } => {
                if let Some(left) = lease_too_short {
                    warn!(allocation_id = %alloc, lease_left_ms = left.as_millis() as u64, "lease too short for another EC2 call; stopping before associating");
                }
                m.coord
                    .release_lease(&m.cleanup, lease.as_ref(), me, forget_intent)
                    .await;
                Input::Done
            }
            Call::Won { addr, adopted } => {
                validate::record(m, &addr, lease.as_ref(), me).await;
                if adopted {
                    info!(public_ip = %addr.public_ip, allocation_id = %alloc, "an earlier attempt had associated it: adopting");
                } else {
                    // EC2's word, not AssociateAddress's answer: the env file and the holder
                    // tag name the association that is there.
                    let seen = addr.association.as_ref().map(|x| &x.id);
                    if seen != answered.as_ref() {
                        warn!(allocation_id = %alloc, "validated with a different association id than AssociateAddress returned");
                    }
                    info!(public_ip = %addr.public_ip, allocation_id = %alloc, association_id = ?seen, fence = lease.as_ref().map(|l| l.fence), "claimed");
                }
                return validate::report(&addr, me, adopted).map(Attempt::Won);
            }
            Call::Done(outcome) => return Ok(Attempt::Done(outcome)),
            Call::Stop(Why::InterfaceLost) => return Err(Stop::InterfaceLost),
            Call::Stop(Why::Stopped) => {
                return Err(stop.expect("the machine stops only after being told why"))
            }
        };
    }
}

/// A call could not finish: keep why (the first reason stands), and tell the machine.
fn stopped(stop: &mut Option<Stop>, why: Stop) -> Input {
    stop.get_or_insert(why);
    Input::Stopped
}
