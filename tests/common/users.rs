//! System users made for a test (and deleted after); their commands run
//! with `setpriv`, with no supplementary groups and no capabilities.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use super::fs_helpers::{must, require_tool, run_cmd};

/// A system user made for this test, deleted on drop.
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl User {
    pub fn create(tag: &str) -> User {
        require_tool("useradd", "passwd");
        require_tool("setpriv", "util-linux");
        let name = format!("sfs{tag}{}", std::process::id());
        let _ = Command::new("userdel").arg(&name).output();
        must(
            Command::new("useradd")
                .args(["--system", "--no-create-home", "--user-group", "--shell"])
                .arg("/usr/sbin/nologin")
                .arg(&name),
        );
        let id = |flag: &str| -> u32 {
            let out = must(Command::new("id").arg(flag).arg(&name));
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        assert_ne!(uid, 0);
        User { name, uid, gid }
    }

    /// `setpriv` set up to run a command as this user.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg("--");
        cmd
    }

    /// Runs `cmd args…` as this user.
    pub fn run(&self, cmd: &str, args: &[&Path]) -> Output {
        run_cmd(self.command().arg(cmd).args(args))
    }

    /// Runs `sh -c script sh args…` as this user.
    pub fn sh(&self, script: &str, args: &[&Path]) -> Output {
        run_cmd(
            self.command()
                .arg("sh")
                .arg("-c")
                .arg(script)
                .arg("sh")
                .args(args),
        )
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}
