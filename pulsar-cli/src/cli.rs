//! The command line: verbs, flags, help texts with examples. Parsing only; each verb's module
//! does the work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;

use crate::forward::ForwardArg;
use crate::keys::DetachKey;
use crate::new::{EnvVar, LimitArg, SerialTarget, SshTarget};

/// The documented exit codes (also in `docs/cli.md`), as a literal for `concat!`.
macro_rules! exit_codes {
    () => {
        "Exit codes:
  0  success (for attach: detached, or the session exited)
  1  error: the daemon refused the request, or something else failed
  2  usage: bad command line
  3  no daemon answers on the socket, or the connection to it was lost
  4  no session has that name or id prefix, or the prefix matches several
  5  wait (or send --wait): no match within the timeout"
    };
}

const TOP_AFTER_HELP: &str = concat!(
    "\
Sessions are addressed by name or by a unique prefix of their id (as `pulsar ls` shows it);
a name wins over an id prefix.

Examples:
  pulsar new build                  # a shell named build, attached; detach with Ctrl-\\
  pulsar new -d logs -- tail -f /var/log/syslog
  pulsar ls
  pulsar top --once                 # what each session uses, and its limits
  pulsar attach build
  pulsar send build 'make test'
  pulsar kill build

Environment:
  PULSAR_SOCKET_PATH  the daemon's socket (default: ~/.config/orbit/pulsar.sock, under
                      $XDG_CONFIG_HOME when set)
  PULSAR_DETACH_KEY   the detach key of attach and new (default ^\\)

",
    exit_codes!(),
    "

See docs/cli.md for more."
);

/// Create, list, attach to, type into and end Pulsar terminal sessions.
///
/// Sessions live in the Pulsar daemon and keep running when you detach or close the
/// terminal.
#[derive(Debug, Parser)]
#[command(name = "pulsar", version, after_help = TOP_AFTER_HELP)]
pub struct Cli {
    /// The daemon's Unix socket.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "PULSAR_SOCKET_PATH",
        hide_env_values = true
    )]
    pub socket: Option<PathBuf>,

    /// Start pulsar-standalone in the background when no daemon answers.
    #[arg(long, global = true)]
    pub start: bool,

    #[command(subcommand)]
    pub verb: Verb,
}

/// `pulsar forward` verbs.
#[derive(Debug, Subcommand)]
pub enum ForwardVerb {
    /// Add a port forward to an SSH session: -L, -R or -D, as with ssh.
    #[command(after_help = FORWARD_AFTER_HELP)]
    Add {
        /// The SSH session's name or a unique prefix of its id.
        #[arg(value_name = "NAME|ID")]
        target: String,
        #[command(flatten)]
        forward: ForwardFlags,
        /// Allow listening on an address other than loopback (reachable from elsewhere).
        #[arg(long)]
        allow_non_loopback: bool,
    },
    /// List port forwards (of one session, or all) with their connections and bytes.
    #[command(visible_alias = "list")]
    Ls {
        /// Only this session's (name or id prefix).
        #[arg(value_name = "NAME|ID")]
        target: Option<String>,
        /// Print them as JSON (every field the daemon reports).
        #[arg(long)]
        json: bool,
    },
    /// Remove port forwards: their listeners close, and their connections.
    Rm {
        /// Forward ids or unique prefixes, as `pulsar forward ls` shows them.
        #[arg(value_name = "ID", required = true)]
        ids: Vec<String>,
    },
}

/// Exactly one of `-L`, `-R`, `-D`.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct ForwardFlags {
    /// Listen here, connect from the server to HOST:PORT (ssh -L).
    #[arg(short = 'L', value_name = "[BIND:]PORT:HOST:PORT", value_parser = crate::forward::parse_local)]
    pub local: Option<ForwardArg>,
    /// The server listens; connections come back here to HOST:PORT (ssh -R).
    #[arg(short = 'R', value_name = "[BIND:]PORT:HOST:PORT", value_parser = crate::forward::parse_remote)]
    pub remote: Option<ForwardArg>,
    /// A SOCKS5 proxy here, connecting from the server (ssh -D).
    #[arg(short = 'D', value_name = "[BIND:]PORT", value_parser = crate::forward::parse_dynamic)]
    pub dynamic: Option<ForwardArg>,
}

impl ForwardFlags {
    /// The one forward given.
    pub fn into_arg(self) -> ForwardArg {
        self.local
            .or(self.remote)
            .or(self.dynamic)
            .expect("clap requires one of -L, -R, -D")
    }
}

const FORWARD_AFTER_HELP: &str = "\
Forwards belong to the daemon, not to this command: they keep working when every client has
detached, come back after the SSH connection reconnects and after a daemon restart, and end
with their session. Addresses listened on default to loopback; anything else needs
--allow-non-loopback. A connection whose target refuses is closed and counted (LAST ERROR);
the forward stays up.

Examples:
  pulsar forward add prod -L 8080:localhost:80      # localhost:8080 here -> prod's port 80
  pulsar forward add prod -L 5432:db.internal:5432  # a database behind prod
  pulsar forward add prod -R 9000:localhost:3000    # prod's localhost:9000 -> our port 3000
  pulsar forward add prod -D 1080                   # SOCKS5 proxy on localhost:1080
  pulsar forward ls
  pulsar forward ls prod --json
  pulsar forward rm 3fa2c1d0

Exit codes: 0 done, 1 the daemon refused (address in use, the server refused, not an SSH
session), 2 usage, 3 no daemon, 4 no such session or forward.";

/// `pulsar workspace` verbs.
#[derive(Debug, Subcommand)]
pub enum WorkspaceVerb {
    /// List workspaces: name, id prefix, panes, sessions shown, tags.
    #[command(visible_alias = "list")]
    Ls {
        /// Print them as JSON (every field the daemon reports).
        #[arg(long)]
        json: bool,
    },
    /// Show a workspace and its panes, each with the session it shows.
    Show {
        /// The workspace's name or a unique prefix of its id.
        #[arg(value_name = "NAME|ID")]
        target: String,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete workspaces and their snapshots; their sessions go on.
    Rm {
        /// Names or unique id prefixes.
        #[arg(value_name = "NAME|ID", required = true)]
        targets: Vec<String>,
    },
}

const WORKSPACE_AFTER_HELP: &str = "\
Workspaces are the desktop's named layouts of panes, each pane showing a session; the daemon
keeps them. `pulsar ls` shows which workspace shows each session.

Examples:
  pulsar workspace ls
  pulsar workspace show \"Rust dev\"
  pulsar workspace rm 3fa2c1

Exit codes: 0 done, 1 the daemon refused, 2 usage (an ambiguous name), 3 no daemon,
4 no such workspace.";

/// `pulsar record`'s verbs.
#[derive(Debug, Subcommand)]
pub enum RecordVerb {
    /// Start recording a session to an asciicast v2 file; print the file.
    Start {
        /// Record what is typed too ("i" events), not only the output.
        #[arg(long)]
        input: bool,
        /// The session's name or a unique prefix of its id.
        #[arg(value_name = "NAME|ID")]
        target: String,
        /// The file to create (never overwritten); default: a new file in the daemon's
        /// recordings_dir.
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Stop a session's recording; the file is complete when this returns.
    Stop {
        /// The session's name or a unique prefix of its id.
        #[arg(value_name = "NAME|ID")]
        target: String,
    },
}

const RECORD_AFTER_HELP: &str = "\
A recording is an asciicast v2 file: play it with `asciinema play FILE`, print it with
`asciinema cat FILE`. It holds the session's output from now on (and resizes; with --input,
what is typed), written by the daemon without ever slowing the session. It stops at the
daemon's recording_max_bytes, when the session ends, or with `pulsar record stop`; a session
that outlives a daemon restart keeps recording to the same file. `pulsar events` says when
and why a recording stopped.

Examples:
  pulsar record start build build.cast
  pulsar record start --input build       # a new file in the daemon's recordings_dir
  pulsar record stop build
  asciinema play build.cast

Exit codes: 0 done, 1 the daemon refused (already recording, not recording, the file
exists or cannot be created), 3 no daemon, 4 no such session.";

const EXPORT_AFTER_HELP: &str = "\
Prints the output the daemon keeps of a session (its saved history and what is in memory) as
an asciicast v2 recording on standard output: what `pulsar record` would have written, had it
been on. Output is timed by when the daemon saved it (every persist_interval_ms), so pauses
are kept to about that precision. Offsets are those of `pulsar ls --json`'s output_offset.

Examples:
  pulsar export build > build.cast && asciinema play build.cast
  pulsar export --since 4096 build > tail.cast

Exit codes: 0 done, 1 the daemon refused (an offset beyond the output), 3 no daemon,
4 no such session.";

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Create a session and attach to it (or print its id with -d).
    #[command(after_help = NEW_AFTER_HELP)]
    New(NewArgs),

    /// List sessions: name, id prefix, type, state, clients, age.
    #[command(visible_alias = "list", after_help = LS_AFTER_HELP)]
    Ls {
        /// Print the sessions as a JSON array (every field the daemon reports).
        #[arg(long)]
        json: bool,
    },

    /// Show what each running session uses (CPU, memory, processes) and its limits,
    /// refreshed every few seconds; Ctrl-C ends it.
    #[command(after_help = TOP_VIEW_AFTER_HELP)]
    Top {
        /// Print the view once and exit (for scripts).
        #[arg(long)]
        once: bool,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 2.0, value_name = "SECS")]
        interval: f64,
    },

    /// Attach this terminal to a session; detach with Ctrl-\ (see --detach-key).
    #[command(visible_alias = "a", after_help = ATTACH_AFTER_HELP)]
    Attach {
        /// The session's name or a unique prefix of its id.
        #[arg(value_name = "NAME|ID")]
        target: String,
        /// Watch without typing or resizing.
        #[arg(short, long)]
        read_only: bool,
        #[command(flatten)]
        detach: DetachKeyArg,
        #[command(flatten)]
        relay: RelayArg,
    },

    /// End sessions (SIGHUP to the program, SIGKILL after the daemon's grace period).
    #[command(after_help = KILL_AFTER_HELP)]
    Kill {
        /// Names or unique id prefixes.
        #[arg(value_name = "NAME|ID", required = true)]
        targets: Vec<String>,
    },

    /// Copy a file to or from an SSH session's host, over the session's own connection.
    #[command(after_help = CP_AFTER_HELP)]
    Cp {
        /// The file to copy: a local path, or SESSION:PATH on the session's host.
        #[arg(value_name = "SOURCE")]
        source: String,
        /// Where to: SESSION:PATH (a trailing / keeps the file's name), or a local path or
        /// directory.
        #[arg(value_name = "DESTINATION")]
        destination: String,
        /// Replace the destination if it exists (atomically).
        #[arg(long)]
        overwrite: bool,
        /// Start the copy and return: the daemon finishes it (see `pulsar ls`).
        #[arg(short, long)]
        detach: bool,
    },

    /// Stop the daemon and end every session (or, with --keep-sessions, leave them running).
    #[command(after_help = SHUTDOWN_AFTER_HELP)]
    Shutdown {
        /// Leave the sessions running in the keeper for the next daemon (as SIGTERM does).
        #[arg(long)]
        keep_sessions: bool,
    },

    /// Replace the running daemon by a new binary without ending a session.
    #[command(after_help = UPGRADE_AFTER_HELP)]
    Upgrade {
        /// The new daemon binary; default: the daemon's executable as it is on disk now.
        #[arg(long, value_name = "PATH")]
        binary: Option<std::path::PathBuf>,
    },

    /// Type text into a session, followed by Enter.
    #[command(after_help = SEND_AFTER_HELP)]
    Send {
        /// Interpret backslash escapes: \n \r \t \e \a \b \f \v \0 \\ \xHH.
        #[arg(short, long)]
        escapes: bool,
        /// Do not press Enter after the text.
        #[arg(short, long)]
        no_newline: bool,
        /// Then wait until the output that follows matches REGEX, and print the match.
        #[arg(long, value_name = "REGEX")]
        wait: Option<String>,
        /// With --wait: how long to wait, in seconds.
        #[arg(long, value_name = "SECS", default_value = "30", value_parser = crate::wait::parse_timeout, requires = "wait")]
        timeout: std::time::Duration,
        /// The session's name or a unique prefix of its id.
        #[arg(value_name = "NAME|ID")]
        target: String,
        /// The text; several words are joined with spaces.
        #[arg(
            value_name = "TEXT",
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        text: Vec<String>,
    },

    /// Wait until a session's output matches a regular expression; print the match.
    #[command(after_help = WAIT_AFTER_HELP)]
    Wait {
        /// The session's name or a unique prefix of its id.
        #[arg(value_name = "NAME|ID")]
        target: String,
        /// The regular expression (Rust regex syntax; (?m) for ^ and $ at line ends).
        #[arg(value_name = "REGEX")]
        pattern: String,
        /// How long to wait, in seconds.
        #[arg(long, value_name = "SECS", default_value = "30", value_parser = crate::wait::parse_timeout)]
        timeout: std::time::Duration,
        /// Match the current screen (and each change of it) instead of the output that
        /// follows.
        #[arg(long)]
        screen: bool,
    },

    /// Print a session's stored output as an asciicast recording (made after the fact).
    #[command(after_help = EXPORT_AFTER_HELP)]
    Export {
        /// The session's name or a unique prefix of its id.
        #[arg(value_name = "NAME|ID")]
        target: String,
        /// From this output offset (default: the oldest output the daemon keeps).
        #[arg(long, value_name = "OFFSET")]
        since: Option<u64>,
        /// Up to this output offset (default: the end).
        #[arg(long, value_name = "OFFSET")]
        until: Option<u64>,
    },

    /// Record a session to an asciicast file, or stop recording it.
    #[command(subcommand, after_help = RECORD_AFTER_HELP)]
    Record(RecordVerb),
    /// Port forwards on SSH sessions (-L, -R, -D): add, list or remove them.
    #[command(subcommand, visible_alias = "fwd", after_help = FORWARD_AFTER_HELP)]
    Forward(ForwardVerb),

    /// The desktop's workspaces: list, show or delete them.
    #[command(subcommand, visible_alias = "ws", after_help = WORKSPACE_AFTER_HELP)]
    Workspace(WorkspaceVerb),

    /// Follow the daemon's events: sessions created, attached, resized, ended; bells,
    /// titles, finished commands.
    #[command(after_help = EVENTS_AFTER_HELP)]
    Events {
        /// Print each event as the daemon's JSON object, one per line.
        #[arg(long)]
        json: bool,
    },

    /// Show whether a daemon answers, its version, pid, uptime and counts.
    #[command(after_help = STATUS_AFTER_HELP)]
    Status {
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },

    /// Print a shell completion script.
    #[command(after_help = COMPLETIONS_AFTER_HELP)]
    Completions {
        /// The shell.
        shell: Shell,
    },
}

/// `pulsar new`'s arguments.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The session's name (unique among live sessions; default: its id's first 8 digits).
    pub name: Option<String>,

    /// Do not attach; print the new session's id.
    #[arg(short, long)]
    pub detach: bool,

    /// An SSH session instead of a local program.
    #[arg(
        long,
        value_name = "[USER@]HOST[:PORT]",
        help = "An SSH session to [USER@]HOST[:PORT] instead of a local program; HOST may be \
                an alias from ~/.ssh/config, which the daemon resolves as ssh(1) does",
        conflicts_with_all = ["serial", "cwd", "env", "command"]
    )]
    pub ssh: Option<SshTarget>,

    /// A serial-port session on DEVICE (default 115200 baud) instead of a local program.
    #[arg(
        long,
        value_name = "DEVICE[@BAUD]",
        conflicts_with_all = ["cwd", "env", "command"]
    )]
    pub serial: Option<SerialTarget>,

    /// Working directory of the program (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,

    /// Set an environment variable for the program (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<EnvVar>,

    /// A resource limit of the session, NAME=VALUE (repeatable): memory_max=2G, cpu_max=50
    /// (percent of one CPU), pids_max=200, nofile_max=1024, output_bytes_per_sec=1M.
    #[arg(long = "limit", value_name = "NAME=VALUE")]
    pub limits: Vec<LimitArg>,

    #[command(flatten)]
    pub detach_key: DetachKeyArg,

    #[command(flatten)]
    pub relay: RelayArg,

    /// The program and its arguments (default: your login shell).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `--detach-key`, shared by `attach` and `new`.
#[derive(Debug, Clone, Args)]
pub struct DetachKeyArg {
    /// The key that detaches: ^X caret notation, C-x or ctrl-x (e.g. ^] or C-a).
    #[arg(
        long = "detach-key",
        value_name = "KEY",
        env = "PULSAR_DETACH_KEY",
        hide_env_values = true,
        default_value = "^\\"
    )]
    pub key: DetachKey,
}

/// `--relay`, shared by `attach` and `new`.
#[derive(Debug, Clone, Args)]
pub struct RelayArg {
    /// Carry keys and output through this process instead of handing the terminal to the
    /// daemon (which then reads and writes it itself, a hop shorter). Implied when standard
    /// output is not the terminal of standard input.
    #[arg(long)]
    pub relay: bool,
}

const NEW_AFTER_HELP: &str = "\
Without CMD the session runs your login shell. A local session starts in the current
directory unless --cwd says otherwise. Without -d, pulsar attaches at once (standard input
must be a terminal).

SSH and serial sessions are sent to the daemon as {\"kind\":\"ssh\",\"host\",\"port\"?,\"user\"?}
and {\"kind\":\"serial\",\"device\",\"baud\"}; a daemon that does not support them yet says so.
--ssh means what ssh(1) means: HOST may be an alias of the daemon user's ~/.ssh/config (its
HostName, User, Port, IdentityFile, ProxyJump, ...), resolved by the daemon; a USER@ or :PORT
given here wins over the file. `pulsar ls --json` shows what it resolved (`ssh`).

Examples:
  pulsar new                             # a shell with a generated name, attached
  pulsar new build                       # a shell named build
  pulsar new -d tests -- cargo test      # run a command detached; prints the id
  pulsar new -d web --cwd ~/site --env PORT=8080 -- npm start
  pulsar new router --serial /dev/ttyUSB0@9600
  pulsar new prod --ssh ada@prod.example:2222
  pulsar new db --ssh db-behind-bastion      # an alias with ProxyJump in ~/.ssh/config";

const LS_AFTER_HELP: &str = "\
STATE is running (clients attached), detached (none), or stopped (the program ended; the
exit code or signal follows). --json prints the daemon's full session info, one object per
session, oldest first.

Examples:
  pulsar ls
  pulsar top --once                 # what each session uses, and its limits
  pulsar ls --json | jq -r '.[] | select(.state == \"detached\") | .name'";

const TOP_VIEW_AFTER_HELP: &str = "\
CPU is the share of one CPU since the previous refresh; MEM and PEAK come from the session's
control group when it has one, else from its processes' resident sets. LIMITS names each limit
and what holds it (cgroup2, cgroup1, rlimit, nice, pump). Sessions are sorted by CPU.

Examples:
  pulsar top
  pulsar top --once";

const ATTACH_AFTER_HELP: &str = "\
The session's current screen is redrawn, then everything it prints is shown live; what you
type goes to it and its size follows your terminal. Detaching leaves it running. pulsar
exits when you detach ([detached from NAME]), when the session ends ([session NAME exited
with code N]) or when the daemon goes away ([lost connection to the daemon], exit 3), and
puts the terminal back as it was in every case.

Examples:
  pulsar attach build
  pulsar attach 3fa8                     # by id prefix
  pulsar attach -r build                 # watch only
  pulsar attach --detach-key '^]' build
  PULSAR_DETACH_KEY=C-a pulsar attach build";

const KILL_AFTER_HELP: &str = "\
A killed session stays listed as stopped, its output readable, until the daemon prunes it.

Examples:
  pulsar kill build
  pulsar kill 3fa8 c0ff";

const CP_AFTER_HELP: &str = "\
The daemon copies the file over SFTP on the session's own SSH connection, so the copy goes on
if this command is detached (--detach), its terminal closed, the connection dropped (it resumes
when the session reconnects) or the daemon restarted. The destination appears whole or not at
all, keeps the source's mode, and is never replaced without --overwrite. A progress bar on a
terminal, a line a second otherwise; Ctrl-C cancels the copy.

Examples:
  pulsar cp build:/var/log/app.log .
  pulsar cp ./release.tar build:/srv/releases/
  pulsar cp --overwrite config.toml build:app/config.toml
  pulsar cp -d big.iso build:/data/";

const UPGRADE_AFTER_HELP: &str = "\
Every session keeps running with the same pid; attached clients see a short pause. A binary
that is missing, not executable, exits or fails while taking over is refused and the running
daemon serves on, saying why. Inside an Orbit host, restart the host instead.

Examples:
  pulsar upgrade
  pulsar upgrade --binary ~/.cargo/bin/pulsar-standalone";

const SHUTDOWN_AFTER_HELP: &str = "\
Stopping the daemon any other way (SIGTERM, an upgrade, a crash) leaves the sessions running:
the next daemon takes them over. This is the explicit way to end everything.

Examples:
  pulsar shutdown
  pulsar shutdown --keep-sessions";

const SEND_AFTER_HELP: &str = "\
The text is typed as is (backslashes included) unless -e is given; Enter is a carriage
return, as the Enter key sends.

Examples:
  pulsar send build make test            # types `make test` and Enter
  pulsar send build 'printf \"%s\\n\" hi'   # backslashes reach the shell untouched
  pulsar send -n build 'partial input'   # no Enter
  pulsar send -e -n vim '\\e:wq\\r'        # Escape, then :wq and Enter
  pulsar send -e -n build '\\x03'         # Ctrl-C
  pulsar send --wait '(?m)^\\$ $' build make  # type, then wait for the prompt";

const WAIT_AFTER_HELP: &str = "\
Matches the output printed after the call (escape sequences and carriage returns removed,
so colours and chunk boundaries are not in the way), or with --screen the screen's rows as
they stand and after each change. Prints the matched text. Exits 5 when nothing matched in
time, 1 when the session ended without a match.

Examples:
  pulsar wait build 'Finished|error'                # wait for cargo, up to 30 s
  pulsar wait --timeout 600 tests 'test result: \\w+'
  pulsar wait --screen build '(?m)^\\$$'           # the prompt is on the screen
                                                  # (screen rows lose trailing blanks)
  pulsar send --wait '(?m)^\\$ $' build 'make'     # type, then wait for the prompt";

const EVENTS_AFTER_HELP: &str = "\
One line per event, the session by name, until the daemon goes away (exit 3) or you press
Ctrl-C. A bell is reported only while no client is attached; finished commands need a shell
that marks its prompts (OSC 133: fish, zsh or bash integrations, VS Code's). A reader too
slow to keep up is told how many events it missed.

Examples:
  pulsar events
  pulsar events --json | jq -r 'select(.type == \"command_finished\") | .exit_code'";

const STATUS_AFTER_HELP: &str = "\
Exits 3 when no daemon answers, so scripts can test for one.

Examples:
  pulsar status
  pulsar status --json
  pulsar --start status                  # start a daemon when none runs";

const COMPLETIONS_AFTER_HELP: &str = "\
Examples:
  pulsar completions bash > ~/.local/share/bash-completion/completions/pulsar
  pulsar completions zsh > ~/.zfunc/_pulsar      # with fpath+=(~/.zfunc) in ~/.zshrc
  pulsar completions fish > ~/.config/fish/completions/pulsar.fish";

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The codes listed in the lines after `heading` in `text`, up to the first line that
    /// lists none.
    fn codes_after(text: &str, heading: &str, code_of: fn(&str) -> Option<u8>) -> Vec<u8> {
        let (_, rest) = text
            .split_once(heading)
            .unwrap_or_else(|| panic!("{heading:?} is missing"));
        rest.lines().skip(1).map_while(code_of).collect()
    }

    #[test]
    fn exit_codes_are_in_the_top_level_help() {
        use crate::error::Exit;
        // Exhaustive, so that a new exit code does not compile until it is listed here.
        let described = |exit: Exit| match exit {
            Exit::Ok
            | Exit::Error
            | Exit::Usage
            | Exit::NoDaemon
            | Exit::NotFound
            | Exit::TimedOut => exit as u8,
        };
        let codes: Vec<u8> = [
            Exit::Ok,
            Exit::Error,
            Exit::Usage,
            Exit::NoDaemon,
            Exit::NotFound,
            Exit::TimedOut,
        ]
        .into_iter()
        .map(described)
        .collect();
        // What `pulsar --help` prints: "  N  meaning" lines under "Exit codes:".
        let help = Cli::command().render_long_help().to_string();
        let in_help = codes_after(&help, "Exit codes:", |line| {
            line.strip_prefix("  ")?.split_once("  ")?.0.parse().ok()
        });
        assert_eq!(
            in_help, codes,
            "pulsar --help lists every exit code:\n{help}"
        );
        // And docs/cli.md's table: "| N | meaning |" rows after its header and rule.
        let docs = include_str!("../../docs/cli.md");
        let in_docs = codes_after(docs, "| code | meaning |\n| --- | --- |", |line| {
            line.strip_prefix("| ")?.split_once(" |")?.0.parse().ok()
        });
        assert_eq!(in_docs, codes, "docs/cli.md lists every exit code");
    }

    #[test]
    fn every_verb_has_examples() {
        for verb in Cli::command().get_subcommands() {
            let help = verb
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.contains("Examples:"),
                "{} has no examples",
                verb.get_name()
            );
        }
    }

    #[test]
    fn new_takes_a_command_after_double_dash() {
        let cli = Cli::try_parse_from(["pulsar", "new", "-d", "x", "--", "ls", "-la"]).unwrap();
        let Verb::New(args) = cli.verb else {
            panic!("not new")
        };
        assert_eq!(args.name.as_deref(), Some("x"));
        assert!(args.detach);
        assert_eq!(args.command, ["ls", "-la"]);
    }

    #[test]
    fn send_takes_hyphenated_words() {
        let cli = Cli::try_parse_from(["pulsar", "send", "s", "ls", "-la"]).unwrap();
        let Verb::Send { text, .. } = cli.verb else {
            panic!("not send")
        };
        assert_eq!(text, ["ls", "-la"]);
    }

    #[test]
    fn ssh_and_a_command_exclude_each_other() {
        let err = Cli::try_parse_from(["pulsar", "new", "--ssh", "a@h", "--", "ls"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
