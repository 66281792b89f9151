//! `agentctl`: the agents list and friends, over the daemon's Unix socket.
//!
//! Exit codes (contract section 5): 0 ok, 1 error, 2 usage, 3 daemon not reachable, 4 no such
//! item. `agentctl prompt` takes a fast path before any argument parsing library runs: one
//! blocking round trip with a ~10 ms budget, silence on any problem, exit 0 always.

use agentctl::{Client, ClientError, ResolveError, display, query};
use agentd_wire::{AgentsPage, Millis};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Budget for the whole prompt query: past it the prompt shows nothing rather than lag.
const PROMPT_BUDGET: Duration = Duration::from_millis(10);

#[derive(Debug, Parser)]
#[command(
    name = "agentctl",
    version,
    about = "See what your AI coding agents are doing."
)]
struct Cli {
    /// The daemon's socket. Default: $XDG_RUNTIME_DIR/agentd/agentd.sock, else <state dir>/agentd.sock.
    #[arg(long, global = true, env = "AGENTD_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List agents, newest activity first.
    Ls {
        /// Everyone's agents (the All tab), not only yours.
        #[arg(long)]
        all: bool,
        /// Only these sources (interactive, cli, api, slack, linear, scheduled, github_actions, web, other).
        #[arg(long, value_name = "S,…")]
        source: Option<String>,
        /// Only these statuses (working, blocked, canceled, failed, success).
        #[arg(long, value_name = "S,…")]
        status: Option<String>,
        /// Only agents created by this person.
        #[arg(long)]
        creator: Option<String>,
        /// Only this harness (claude-code, codex, gemini, …).
        #[arg(long)]
        harness: Option<String>,
        /// Only agents created on this day: YYYY-MM-DD, today or yesterday.
        #[arg(long, value_name = "D")]
        day: Option<String>,
        /// Text to find in the title or project.
        #[arg(short = 'q', long = "query", value_name = "TEXT")]
        q: Option<String>,
        /// How many to show.
        #[arg(short = 'n', long = "limit", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
        n: u32,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one agent (a unique id prefix is enough).
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Print an agent's log.
    Logs {
        id: String,
        /// Keep printing new output until the agent finishes.
        #[arg(short, long)]
        follow: bool,
    },
    /// Open the shared session, or run the resume command.
    Open {
        id: String,
        /// Print the URL or command instead.
        #[arg(long)]
        print: bool,
    },
    /// Counts: working, blocked, and today's results.
    Summary {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// One short line for a shell prompt; empty when nothing is active.
    Prompt {
        /// Placeholders: {working} {blocked} {active} {failed_today} {cost_today} {credits_today}.
        #[arg(long, default_value = "")]
        format: String,
        #[arg(long)]
        all: bool,
    },
    /// Run a command as a recorded run: output passes through and is logged; exits with its code.
    Run {
        /// Title shown in the list (default: the prompt of a known agent CLI, else the command).
        #[arg(long)]
        title: Option<String>,
        /// Harness (default: claude-code for claude, else the program name).
        #[arg(long)]
        harness: Option<String>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Stop an agent: a run is interrupted (SIGINT, then SIGTERM after 5 s, SIGKILL after 10 s
    /// more), a cloud run canceled, a Claude Code conversation interrupted (needs --force).
    Stop {
        id: String,
        /// A run: kill it at once. A conversation: yes, interrupt the interactive session.
        #[arg(long)]
        force: bool,
    },
    /// Wait until agents reach a state; prints them and exits 0 (124 on timeout).
    Wait {
        /// The agents to wait for (unique id prefixes); none: those matching the filters.
        ids: Vec<String>,
        /// The state to wait for.
        #[arg(long, value_enum, default_value = "finished")]
        until: agentctl::wait::Until,
        /// Return when any one of them meets it (the default).
        #[arg(long, conflicts_with = "all")]
        any: bool,
        /// Return only when all of them meet it.
        #[arg(long)]
        all: bool,
        /// Give up after this long (90, 30s, 5m, 2h) and exit 124.
        #[arg(long, value_name = "DURATION", value_parser = agentctl::wait::parse_duration)]
        timeout: Option<Duration>,
        /// Without ids: only these sources.
        #[arg(long, value_name = "S,…")]
        source: Option<String>,
        /// Without ids: only these harnesses.
        #[arg(long, value_name = "H,…")]
        harness: Option<String>,
        /// Without ids: only agents in these statuses when first seen.
        #[arg(long, value_name = "S,…")]
        status: Option<String>,
        /// Print the API's JSON (one item a line).
        #[arg(long)]
        json: bool,
    },
    /// The management view in this terminal: live list, filters, inspect, stop (? for keys).
    Top {
        /// Start on the All tab.
        #[arg(long)]
        all: bool,
    },
    /// Run a cloud sync now.
    Sync {
        #[arg(long)]
        json: bool,
    },
    /// The hook command for an agent CLI (`agentctl hook claude-code|codex|gemini|qwen|droid|copilot`): forwards
    /// the hook's payload on stdin to agentd, silently, and always exits 0.
    Hook {
        /// The agent whose hook this is: claude-code, codex, gemini, qwen, droid or copilot.
        agent: String,
        /// Add this hook to the agent's settings (shows the change first).
        #[arg(long)]
        install: bool,
        /// With --install: show the change, write nothing.
        #[arg(long, requires = "install")]
        dry_run: bool,
    },
    /// Start agentd at login: install, remove or inspect the systemd/launchd service.
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
    /// Open the management view in a browser.
    Web {
        /// Print the URL instead.
        #[arg(long)]
        print: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
enum ServiceAction {
    /// Write the unit (or plist) for this agentd and enable it.
    Install {
        /// Print what would be written and run, and do nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Disable the service and remove its files.
    Uninstall {
        /// Print what would be removed and run, and do nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Whether the service is installed, which binary it runs, and its state.
    Status,
}

/// A failure and the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        match e {
            ClientError::Unreachable { socket, source } => Failure {
                code: 3,
                message: format!(
                    "agentd is not running (no answer on {}: {source}). Start it with `agentd`, or pass --socket if it listens elsewhere.",
                    socket.display()
                ),
            },
            ClientError::Api {
                status: 400,
                message,
                ..
            } => Failure { code: 2, message },
            ClientError::Api {
                status: 404,
                message,
                ..
            } => Failure { code: 4, message },
            other => Failure {
                code: 1,
                message: other.to_string(),
            },
        }
    }
}

impl From<ResolveError> for Failure {
    fn from(e: ResolveError) -> Failure {
        match e {
            ResolveError::NotFound(_) => Failure {
                code: 4,
                message: e.to_string(),
            },
            ResolveError::Ambiguous { .. } => Failure {
                code: 1,
                message: format!("{e}; give more of the id"),
            },
            ResolveError::Client(c) => c.into(),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure {
            code: 1,
            message: e.to_string(),
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("prompt") {
        prompt_fast(&args[2..]);
        return ExitCode::SUCCESS;
    }
    let cli = Cli::parse();
    if let Command::Run {
        title,
        harness,
        command,
    } = &cli.command
    {
        // Needs no daemon: the run log is read whenever agentd runs.
        let env = &agentd_wire::paths::process_env;
        let runs = agentd_wire::paths::state_dir(env).join("runs");
        let spec = agentctl::run::RunSpec {
            title: title.clone(),
            harness: harness.clone(),
            command: command.clone(),
        };
        let code = agentctl::run::run(&spec, &runs);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    if let Command::Hook {
        agent,
        install,
        dry_run,
    } = &cli.command
    {
        let Some(agent) = agentctl::hook::Agent::parse(agent) else {
            eprintln!(
                "agentctl: hooks exist for claude-code, codex, gemini, qwen, droid and copilot, not {agent:?}"
            );
            return ExitCode::from(2);
        };
        if *install {
            return match agentctl::hook::install(agent, *dry_run) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("agentctl: {e}");
                    ExitCode::from(1)
                }
            };
        }
        let client = Client::new(cli.socket.clone().unwrap_or_else(agentctl::default_socket));
        agentctl::hook::forward(&client, agent);
        return ExitCode::SUCCESS; // a hook never fails its agent
    }
    if let Command::Service { action } = &cli.command {
        // Needs no daemon either.
        use agentctl::service::{Action, service};
        let outcome = match action {
            ServiceAction::Install { dry_run } => service(Action::Install, *dry_run),
            ServiceAction::Uninstall { dry_run } => service(Action::Uninstall, *dry_run),
            ServiceAction::Status => service(Action::Status, false),
        };
        return match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("agentctl: {e}");
                ExitCode::from(1)
            }
        };
    }
    let client = Client::new(cli.socket.clone().unwrap_or_else(agentctl::default_socket));
    match run(&client, cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("agentctl: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// `agentctl prompt`: parses its few flags by hand, makes one request within the budget and
/// prints the line, or nothing.
fn prompt_fast(args: &[String]) {
    let mut format = String::new();
    let mut socket = None;
    let mut all = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--format" => format = it.next().cloned().unwrap_or_default(),
            "--socket" => socket = it.next().map(PathBuf::from),
            "--all" => all = true,
            s if s.starts_with("--format=") => format = s["--format=".len()..].to_owned(),
            s if s.starts_with("--socket=") => {
                socket = Some(PathBuf::from(&s["--socket=".len()..]))
            }
            _ => return, // a prompt never prints usage errors
        }
    }
    print_prompt(socket, &format, all);
}

/// The prompt line: one request within [`PROMPT_BUDGET`], printed only if it all worked.
fn print_prompt(socket: Option<PathBuf>, format: &str, all: bool) {
    let client = Client::new(socket.unwrap_or_else(agentctl::default_socket));
    let path = if all {
        "/v1/summary?tab=all"
    } else {
        "/v1/summary"
    };
    let Ok(resp) = client.get_within(path, PROMPT_BUDGET) else {
        return;
    };
    let Ok(summary) = client.json::<agentd_wire::Summary>(resp) else {
        return;
    };
    let line = display::prompt(&summary, format);
    if !line.is_empty() {
        let _ = writeln!(std::io::stdout(), "{line}");
    }
}

fn print_json(v: &impl serde::Serialize) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Failure {
        code: 1,
        message: e.to_string(),
    })?;
    println!("{s}");
    Ok(())
}

/// Columns of the terminal on stdout, else `$COLUMNS`; `None` when neither is known (a pipe).
fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ fills a winsize struct we own; isatty has no preconditions.
    unsafe {
        if libc::isatty(libc::STDOUT_FILENO) == 1 {
            let mut ws: libc::winsize = std::mem::zeroed();
            if libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0 {
                return Some(ws.ws_col as usize);
            }
        }
    }
    std::env::var("COLUMNS").ok()?.parse().ok()
}

fn run(client: &Client, command: Command) -> Result<(), Failure> {
    match command {
        Command::Ls {
            all,
            source,
            status,
            creator,
            harness,
            day,
            q,
            n,
            json,
        } => {
            let pairs = vec![
                ("tab", if all { "all" } else { "personal" }.to_owned()),
                ("source", source.unwrap_or_default()),
                ("status", status.unwrap_or_default()),
                ("creator", creator.unwrap_or_default()),
                ("harness", harness.unwrap_or_default()),
                ("day", day.unwrap_or_default()),
                ("q", q.unwrap_or_default()),
            ];
            let want = n as usize;
            let mut items = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut p = pairs.clone();
                p.push(("limit", (want - items.len()).min(1000).to_string()));
                p.push(("cursor", cursor.clone().unwrap_or_default()));
                let page: AgentsPage = client.agents(&query(&p))?;
                items.extend(page.items);
                cursor = page.next_cursor;
                if cursor.is_none() || items.len() >= want {
                    break;
                }
            }
            if json {
                return print_json(&AgentsPage {
                    items,
                    next_cursor: cursor,
                });
            }
            if items.is_empty() {
                println!(
                    "No agents{}.",
                    if all { "" } else { " of yours (try --all)" }
                );
                return Ok(());
            }
            print!(
                "{}",
                display::table(&items, Millis::now(), terminal_width())
            );
            Ok(())
        }
        Command::Show { id, json } => {
            let item = client.resolve(&id)?;
            if json {
                return print_json(&item);
            }
            let now = Millis::now();
            let opt = |v: &Option<String>| display::printable(v.as_deref().unwrap_or("-"));
            println!(
                "{} {}  {}",
                display::status_icon(&item),
                item.status,
                opt(&item.title)
            );
            println!("  id        {}", item.id);
            if let Some(d) = &item.status_detail {
                println!("  detail    {}", display::printable(d));
            }
            if let Some(s) = item.status_source {
                println!("  status by {}", display::status_source(s));
            }
            if item.blocked_ms > 0 {
                println!(
                    "  waited    {} on you{}",
                    display::duration(item.blocked_ms),
                    match item.blocked_since {
                        Some(since) =>
                            format!(" (waiting now, since {})", display::relative(since, now)),
                        None => String::new(),
                    }
                );
            }
            println!(
                "  source    {} ({})",
                item.source,
                if item.kind == agentd_wire::Kind::Run {
                    "run"
                } else {
                    "interactive"
                }
            );
            println!("  harness   {}", opt(&item.harness));
            println!(
                "  creator   {}{}",
                opt(&item.creator),
                if item.mine { " (you)" } else { "" }
            );
            println!("  project   {}", opt(&item.project));
            println!("  model     {}", opt(&item.model));
            println!(
                "  created   {} ({})",
                item.created_at,
                display::relative(item.created_at, now)
            );
            println!(
                "  updated   {} ({})",
                item.updated_at,
                display::relative(item.updated_at, now)
            );
            if let Some(f) = item.finished_at {
                println!("  finished  {f}");
            }
            if let Some(d) = item.duration_ms {
                println!("  duration  {}", display::duration(d));
            }
            println!("  cost      {}", display::money(&item));
            let u = item.usage;
            println!(
                "  tokens    in {} · out {} · cache read {} · cache write {}",
                u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens
            );
            if let Some(url) = &item.open.url {
                println!("  open      {}", display::printable(url));
            }
            if let Some(cmd) = &item.open.command {
                println!("  resume    {}", display::printable(cmd));
            }
            Ok(())
        }
        Command::Logs { id, follow } => {
            let item = client.resolve(&id)?;
            let path = format!(
                "/v1/agents/{}/log{}",
                agentctl::encode_segment(&item.id),
                if follow { "?follow=true" } else { "" }
            );
            let mut out = std::io::stdout().lock();
            let mut write_err = None;
            client.stream(
                &path,
                &mut |data| match out.write_all(data).and_then(|_| out.flush()) {
                    Ok(()) => true,
                    Err(e) => {
                        write_err = Some(e);
                        false
                    }
                },
            )?;
            match write_err {
                Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            }
        }
        Command::Stop { id, force } => {
            let item = client.resolve(&id)?;
            let path = format!(
                "/v1/agents/{}/cancel{}",
                agentctl::encode_segment(&item.id),
                if force { "?force=true" } else { "" }
            );
            let resp = client.request("POST", &path, None)?;
            let _: agentd_wire::CancelAnswer = client.json(resp)?;
            println!(
                "stopping {} ({}){}",
                item.id,
                display::printable(item.title.as_deref().unwrap_or("")),
                if force { ", forced" } else { "" }
            );
            Ok(())
        }
        Command::Wait {
            ids,
            until,
            any: _,
            all,
            timeout,
            source,
            harness,
            status,
            json,
        } => {
            let mut resolved = Vec::new();
            for id in &ids {
                resolved.push(client.resolve(id)?.id);
            }
            // Two prefixes of one agent are one agent (or `--all` could never be met).
            resolved.sort();
            resolved.dedup();
            let spec = agentctl::wait::WaitSpec {
                ids: resolved,
                filters: agentctl::wait::Filters {
                    source,
                    harness,
                    status,
                },
                until,
                all,
                timeout,
            };
            match agentctl::wait::wait(client, &spec)? {
                agentctl::wait::Outcome::Met(items) => {
                    if json {
                        for i in &items {
                            println!("{}", serde_json::to_string(i).unwrap_or_default());
                        }
                    } else {
                        print!(
                            "{}",
                            display::table(&items, Millis::now(), terminal_width())
                        );
                    }
                    Ok(())
                }
                agentctl::wait::Outcome::TimedOut => Err(Failure {
                    code: 124,
                    message: "timed out".into(),
                }),
            }
        }
        Command::Top { all } => {
            use std::io::IsTerminal;
            if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
                return Err(Failure {
                    code: 2,
                    message:
                        "top needs a terminal; use `agentctl ls` or `agentctl wait` in scripts"
                            .into(),
                });
            }
            match agentctl::top::run(client, all, agentctl::top::Look::from_env())? {
                agentctl::top::Exit::Quit => Ok(()),
                agentctl::top::Exit::Resume(cmd) => {
                    use std::os::unix::process::CommandExt;
                    let err = std::process::Command::new("sh").arg("-c").arg(&cmd).exec();
                    Err(Failure {
                        code: 1,
                        message: format!("cannot run `{cmd}`: {err}"),
                    })
                }
            }
        }
        Command::Open { id, print } => {
            let item = client.resolve(&id)?;
            match (&item.open.url, &item.open.command) {
                (Some(url), _) if print => {
                    println!("{url}");
                    Ok(())
                }
                (Some(url), _) => open_url(url),
                (None, Some(cmd)) if print => {
                    println!("{cmd}");
                    Ok(())
                }
                (None, Some(cmd)) => {
                    use std::os::unix::process::CommandExt;
                    let err = std::process::Command::new("sh").arg("-c").arg(cmd).exec();
                    Err(Failure {
                        code: 1,
                        message: format!("cannot run `{cmd}`: {err}"),
                    })
                }
                (None, None) => Err(Failure {
                    code: 1,
                    message: format!("{} has nothing to open", item.id),
                }),
            }
        }
        Command::Summary { all, json } => {
            let s = client.summary(all)?;
            if json {
                return print_json(&s);
            }
            println!("⚙ working  {}", s.working);
            println!(
                "🟨 blocked  {}{}",
                s.blocked,
                match s.waiting_since {
                    Some(since) => format!(
                        " (the longest waiting for {})",
                        display::duration(Millis::now().0.saturating_sub(since.0).max(0) as u64)
                    ),
                    None => String::new(),
                }
            );
            println!(
                "today      ✅ {} success · 🔺 {} failed · ⬜ {} canceled · ${:.2} · {} credits",
                s.today.success,
                s.today.failed,
                s.today.canceled,
                s.today.cost_usd,
                s.today.credits
            );
            if s.today.blocked_ms > 0 {
                println!(
                    "           waiting on you: {} today",
                    display::duration(s.today.blocked_ms)
                );
            }
            Ok(())
        }
        Command::Run { .. } | Command::Service { .. } | Command::Hook { .. } => {
            unreachable!("handled before connecting")
        }
        // Reached when a global flag comes first (`agentctl --socket S prompt`).
        Command::Prompt { format, all } => {
            print_prompt(Some(client.socket().to_owned()), &format, all);
            Ok(())
        }
        Command::Sync { json } => {
            let resp =
                client
                    .clone()
                    .with_timeout(None)
                    .request("POST", "/v1/sync", Some(b"{}"))?;
            let v: serde_json::Value = client.json(resp)?;
            if json {
                return print_json(&v);
            }
            println!(
                "synced {}",
                v.get("synced").and_then(|n| n.as_u64()).unwrap_or(0)
            );
            Ok(())
        }
        Command::Web { print } => {
            let health = client.health()?;
            let Some(http) = health.http else {
                return Err(Failure {
                    code: 1,
                    message: "agentd's HTTP listener is off; start it with --http 127.0.0.1:7431"
                        .into(),
                });
            };
            let state = agentd_wire::paths::state_dir(&agentd_wire::paths::process_env);
            let token_path = agentd_wire::paths::token_path(&state);
            let token = std::fs::read_to_string(&token_path).map_err(|e| Failure {
                code: 1,
                message: format!("cannot read the token {}: {e}", token_path.display()),
            })?;
            let url = format!("http://{}/?token={}", http.addr, token.trim());
            if print {
                println!("{url}");
                return Ok(());
            }
            open_url(&url)
        }
    }
}

/// Opens a URL with the desktop's opener.
fn open_url(url: &str) -> Result<(), Failure> {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    match std::process::Command::new(opener).arg(url).status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(Failure {
            code: 1,
            message: format!("{opener} failed ({s}); the URL is {url}"),
        }),
        Err(e) => Err(Failure {
            code: 1,
            message: format!("cannot run {opener} ({e}); the URL is {url}"),
        }),
    }
}
