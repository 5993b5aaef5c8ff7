//! The environment's nginx: one process (its prefix is `nginx/` in the work
//! directory) with one `server` per routed deployment and one weighted
//! `upstream` each. A new config is written beside the old one, checked
//! with `nginx -t`, swapped in, and loaded by SIGHUP (graceful: old workers
//! finish their requests); the pack follows nginx's log until nginx says it
//! started the new workers, and puts the previous config back when nginx
//! refuses the new one, so routing and the files agree.

use serde::{Deserialize, Serialize};

use crate::envpack::deployer::process::{self, ProcessInfo, Signal, SpawnRequest};
use crate::procs::{self, live};
use crate::settings::Settings;
use crate::state::{self, Route};

const PREFIX: &str = "/nginx";
const STATE: &str = "/nginx/process.json";
/// How long nginx may take to confirm a start or a reload.
const CONFIRM_MS: u64 = 10_000;

#[derive(Serialize, Deserialize)]
struct Tracked {
    process: String,
}

fn is_ours(info: &ProcessInfo, settings: &Settings) -> bool {
    procs::running(info) && info.command == settings.nginx && info.args.iter().any(|a| a == "daemon off;")
}

/// The running nginx of this environment, if any.
pub fn find(settings: &Settings) -> Option<ProcessInfo> {
    if let Ok(Some(tracked)) = state::read::<Tracked>(STATE)
        && let Some(info) = live(&tracked.process)
    {
        return Some(info);
    }
    // Started by a command that crashed before writing `process.json`.
    process::processes().into_iter().find(|p| is_ours(p, settings))
}

/// nginx's config for these routes.
pub fn render(env: &str, routes: &[Route]) -> String {
    let mut out = format!(
        "# Written by envpack.deployer.local-process for environment {env:?}; do not edit.\n\
         worker_processes 1;\npid nginx.pid;\nerror_log stderr notice;\n\
         events {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n\
         \x20 client_body_temp_path tmp/client_body;\n  proxy_temp_path tmp/proxy;\n\
         \x20 fastcgi_temp_path tmp/fastcgi;\n  uwsgi_temp_path tmp/uwsgi;\n  scgi_temp_path tmp/scgi;\n"
    );
    for (n, route) in routes.iter().enumerate() {
        let routed: Vec<(u16, u32)> = route
            .upstreams
            .iter()
            .filter_map(|u| Some((u.port?, u.weight_bps)))
            .filter(|(_, w)| *w > 0)
            .collect();
        if routed.is_empty() {
            continue;
        }
        let divisor = routed.iter().fold(0, |g, (_, w)| gcd(g, *w));
        out.push_str(&format!(
            "  # deployment {:?}, split generation {}\n",
            route.deployment, route.generation
        ));
        out.push_str(&format!("  upstream deployment_{n} {{\n"));
        for (port, weight) in &routed {
            out.push_str(&format!(
                "    server 127.0.0.1:{port} weight={} max_fails=0;\n",
                weight / divisor
            ));
        }
        out.push_str("  }\n");
        out.push_str(&format!(
            "  server {{\n    listen {};\n    location / {{\n      proxy_pass http://deployment_{n};\n\
             \x20     proxy_http_version 1.1;\n      proxy_set_header Host $host;\n      proxy_read_timeout 300s;\n    }}\n  }}\n",
            route.listen
        ));
    }
    out.push_str("}\n");
    out
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Makes nginx route `routes`: checks, swaps in and loads the config,
/// starting nginx on first use. On any refusal the previous config stays.
pub fn install(env: &str, routes: &[Route], settings: &Settings) -> Result<String, String> {
    let mut listens: Vec<&str> = routes.iter().map(|r| r.listen.as_str()).collect();
    listens.sort_unstable();
    if let Some(pair) = listens.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!(
            "two deployments listen on {}; give each its own listen.<deployment>",
            pair[0]
        ));
    }
    let config = render(env, routes);
    std::fs::create_dir_all(format!("{PREFIX}/tmp")).map_err(|e| format!("{PREFIX}/tmp: {e}"))?;
    let current = format!("{PREFIX}/nginx.conf");
    let loaded = format!("{PREFIX}/nginx.conf.loaded");
    let running = find(settings);
    // Only a load nginx confirmed counts: a run killed after swapping the
    // file in, or before nginx confirmed the reload, leaves `nginx.conf`
    // equal to the config while nginx may still route the old one.
    if running.is_some() && std::fs::read_to_string(&loaded).is_ok_and(|c| c == config) {
        return Ok("nginx already routes this".into());
    }
    state::remove(&loaded)?;
    state::write_bytes(&format!("{PREFIX}/nginx.conf.next"), config.as_bytes())?;
    procs::run(
        &settings.nginx,
        &["-t", "-q", "-p", ".", "-c", "nginx.conf.next", "-e", "stderr"],
        &PREFIX[1..],
        10_000,
    )
    .map_err(|e| format!("nginx refused the new config, the previous one stays: {e}"))?;
    let previous = std::fs::read(&current).ok();
    std::fs::rename(format!("{PREFIX}/nginx.conf.next"), &current).map_err(|e| format!("{current}: {e}"))?;
    let result = match running {
        Some(info) => reload(&info),
        None => start(settings),
    };
    if let Err(error) = result {
        match previous {
            Some(bytes) => state::write_bytes(&current, &bytes)?,
            None => state::remove(&current)?,
        }
        return Err(error);
    }
    state::write_bytes(&loaded, config.as_bytes())?;
    result
}

fn reload(info: &ProcessInfo) -> Result<String, String> {
    let log = format!("/{}", info.stderr_path);
    let offset = state::file_len(&log);
    process::send_signal(&info.id, Signal::Hup).map_err(|e| procs::describe(&e))?;
    // Done once the old worker stopped accepting: until then it still
    // answers new connections with the old routing.
    confirm(
        info,
        &log,
        offset,
        &["start worker process", "gracefully shutting down"],
    )
    .map(|()| format!("nginx {} reloaded", info.id))
}

fn start(settings: &Settings) -> Result<String, String> {
    let request = SpawnRequest {
        command: settings.nginx.clone(),
        args: ["-p", ".", "-c", "nginx.conf", "-e", "stderr", "-g", "daemon off;"]
            .map(String::from)
            .to_vec(),
        env: Vec::new(),
        cwd: PREFIX[1..].to_string(),
    };
    let info = process::spawn(&request).map_err(|e| format!("starting nginx: {}", procs::describe(&e)))?;
    state::write(
        STATE,
        &Tracked {
            process: info.id.clone(),
        },
    )?;
    let log = format!("/{}", info.stderr_path);
    if let Err(error) = confirm(&info, &log, 0, &["start worker process"]) {
        let _ = procs::kill(&info.id);
        return Err(error);
    }
    Ok(format!("nginx {} started (pid {})", info.id, info.pid))
}

/// Follows nginx's log from `offset` until every one of `done` appears, in
/// order, or nginx reports an emergency (refused), or the process exits.
fn confirm(info: &ProcessInfo, log: &str, offset: u64, done: &[&str]) -> Result<(), String> {
    let until = procs::now_ms() + CONFIRM_MS;
    // A reload is confirmed within milliseconds: look soon, then less often.
    let mut pause = 2;
    loop {
        let text = state::read_from(log, offset);
        if let Some(line) = text.lines().find(|l| l.contains("[emerg]") || l.contains("[alert]")) {
            // A bind failure is retried by nginx itself (five times, half a
            // second apart) before it gives up on the new config: wait for
            // that, so that a retry with another port is not answered by
            // this attempt's late lines.
            let settled = !line.contains("bind()") || text.contains("still could not bind()");
            if settled || live(&info.id).is_none() || procs::now_ms() >= until {
                return Err(format!("nginx refused the config, the previous routing stays: {line}"));
            }
            procs::sleep_ms(20);
            continue;
        }
        let mut rest = text.as_str();
        let all = done.iter().all(|marker| match rest.find(marker) {
            Some(at) => {
                rest = &rest[at + marker.len()..];
                true
            }
            None => false,
        });
        if all {
            return Ok(());
        }
        if live(&info.id).is_none() {
            return Err(format!("nginx exited: {}", state::tail(log, 6)));
        }
        if procs::now_ms() >= until {
            return Err(format!(
                "nginx did not confirm within {CONFIRM_MS} ms: {}",
                state::tail(log, 6)
            ));
        }
        procs::sleep_ms(pause);
        pause = (pause * 2).min(20);
    }
}

/// Stops nginx (graceful, then KILL) when nothing is left for it to route.
pub fn stop(settings: &Settings) -> Result<Option<String>, String> {
    let Some(info) = find(settings) else {
        return Ok(None);
    };
    procs::stop(&info.id, 5000)?;
    state::remove(&format!("{PREFIX}/nginx.conf.loaded"))?;
    state::remove(STATE)?;
    Ok(Some(format!("nginx {} stopped", info.id)))
}
