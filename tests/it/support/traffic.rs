//! A platform simulator for the soak and rolling-restart tests: drives many
//! registration flows through a set of replicas, redelivering an update the
//! way platforms do when the answer is an error or never arrives, and checks
//! every answer against the flow's expected next prompt.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What each step of the demo flow answers when applied exactly once, in order.
pub fn expected_reply(chat: i64, step: usize) -> String {
    match step {
        0 => "Welcome! What's your name?".into(),
        1 => format!("Nice to meet you, n{chat}. Your email?"),
        2 => "Which plan: basic or pro?".into(),
        _ => format!("Registered n{chat} <n{chat}@example.com> on the pro plan. Done!"),
    }
}

pub fn step_text(chat: i64, step: usize) -> String {
    match step {
        0 => "/start".into(),
        1 => format!("n{chat}"),
        2 => format!("n{chat}@example.com"),
        _ => "pro".into(),
    }
}

pub fn update_id(chat: i64, step: usize) -> u64 {
    chat as u64 * 10 + step as u64
}

/// Counts of what the platform saw.
#[derive(Default, Debug)]
pub struct Report {
    /// Steps acknowledged with the expected answer.
    pub acknowledged: AtomicU64,
    /// Redeliveries (after a 502/503/504 or no answer).
    pub redeliveries: AtomicU64,
    pub status_502: AtomicU64,
    pub status_503: AtomicU64,
    pub status_504: AtomicU64,
    pub no_answer: AtomicU64,
    /// Anything else: wrong status or an answer that shows a lost or
    /// doubled step. Must stay empty.
    pub violations: Mutex<Vec<String>>,
    /// Send every update twice at once, to two replicas: a redelivery
    /// racing the original (the fleet test). Both answers, when 200, must
    /// be the step's.
    pub racing_duplicates: bool,
    /// Racing duplicates answered 200 (the step's answer, the bot not run
    /// twice for it).
    pub duplicates_answered: AtomicU64,
    /// Every delivery's outcome and every injected fault, timed: printed
    /// for the conversations a violation names (`checks::verify`).
    pub timeline: Mutex<Vec<(Instant, Option<i64>, String)>>,
}

impl Report {
    /// Notes an event of conversation `chat` (`None`: a fault).
    pub fn note(&self, chat: Option<i64>, what: String) {
        let mut timeline = self.timeline.lock().unwrap_or_else(|p| p.into_inner());
        timeline.push((Instant::now(), chat, what));
    }

    /// The timeline of `chats` and of the faults, in ms from its start.
    pub fn timeline_of(&self, chats: &[i64]) -> String {
        let timeline = self.timeline.lock().unwrap_or_else(|p| p.into_inner());
        let Some(start) = timeline.first().map(|(at, _, _)| *at) else {
            return String::new();
        };
        timeline
            .iter()
            .filter(|(_, chat, _)| chat.is_none_or(|c| chats.contains(&c)))
            .map(|(at, chat, what)| {
                let who = chat.map_or("fault".to_string(), |c| format!("chat {c}"));
                format!("{:>7} ms {who}: {what}", (*at - start).as_millis())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Drives `chats` through `targets` until each reached its `goal(chat)`
/// step (0..=3, inclusive) or `deadline` passed; once `no_new` is set, no
/// further conversation is started (those under way are finished). Returns
/// how many steps of each started conversation were acknowledged.
pub fn drive(
    targets: &[SocketAddr],
    chats: &[i64],
    goal: impl Fn(i64) -> usize + Sync,
    threads: usize,
    deadline: Instant,
    report: &Report,
    no_new: &AtomicBool,
) -> Vec<(i64, usize)> {
    let stop = AtomicBool::new(false);
    let stop = &stop;
    let next = AtomicU64::new(0);
    let progress = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..threads {
            let (next, progress, goal) = (&next, &progress, &goal);
            s.spawn(move || {
                let mut pick = t;
                loop {
                    if no_new.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(&chat) = chats.get(i) else { return };
                    let mut done = 0;
                    for step in 0..=goal(chat) {
                        if !deliver(targets, &mut pick, chat, step, deadline, report, stop) {
                            break;
                        }
                        done = step + 1;
                    }
                    progress.lock().unwrap().push((chat, done));
                }
            });
        }
    });
    progress.into_inner().unwrap()
}

/// Delivers one update until it is acknowledged. False if time ran out.
fn deliver(
    targets: &[SocketAddr],
    pick: &mut usize,
    chat: i64,
    step: usize,
    deadline: Instant,
    report: &Report,
    stop: &AtomicBool,
) -> bool {
    let body = super::tg_update(update_id(chat, step), chat, &step_text(chat, step));
    let mut first = true;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        if !first {
            report.redeliveries.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(20));
        }
        first = false;
        *pick = pick.wrapping_add(1);
        let target = targets[*pick % targets.len()];
        let racing = report
            .racing_duplicates
            .then(|| targets[(*pick + 1) % targets.len()])
            .filter(|other| *other != target);
        let answer = std::thread::scope(|s| {
            let duplicate = racing.map(|other| {
                let body = &body;
                s.spawn(move || super::post_json(other, "/telegram", body, &[]))
            });
            let answer = super::post_json(target, "/telegram", &body, &[]);
            if let Some(Ok(Ok(r))) = duplicate.map(|d| d.join()) {
                if r.status == 200 {
                    let got = super::reply_text(&r);
                    if got != expected_reply(chat, step) {
                        report.violations.lock().unwrap().push(format!(
                            "chat {chat} step {step}: the racing duplicate answered {got:?}"
                        ));
                    }
                    report.duplicates_answered.fetch_add(1, Ordering::Relaxed);
                }
            }
            answer
        });
        let seen = match &answer {
            Ok(r) => format!("{} {:?}", r.status, super::reply_text(r)),
            Err(_) => "no answer".to_string(),
        };
        report.note(Some(chat), format!("step {step} to {target}: {seen}"));
        match answer {
            Err(_) => {
                report.no_answer.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => match r.status {
                200 => {
                    let got = super::reply_text(&r);
                    let want = expected_reply(chat, step);
                    if got != want {
                        report.violations.lock().unwrap().push(format!(
                            "chat {chat} step {step}: answered {got:?}, expected {want:?}"
                        ));
                    }
                    report.acknowledged.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                502 => {
                    report.status_502.fetch_add(1, Ordering::Relaxed);
                }
                503 => {
                    report.status_503.fetch_add(1, Ordering::Relaxed);
                }
                504 => {
                    report.status_504.fetch_add(1, Ordering::Relaxed);
                }
                other => {
                    report.violations.lock().unwrap().push(format!(
                        "chat {chat} step {step}: status {other}: {}",
                        r.text()
                    ));
                    return false;
                }
            },
        }
    }
    false
}
