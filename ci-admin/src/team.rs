//! `ci-admin team`: create, list, show and delete teams, and add and remove their members.

use std::io::Write;

use anyhow::{anyhow, bail, Context, Result};
use ci_common::db::teams::{self, Team};
use ci_common::db::{Db, DbError};
use clap::Subcommand;

use crate::{local_time, resolve_user, write_table, UserRef};

#[derive(Debug, Subcommand)]
pub enum TeamCommand {
    /// Create a team. Its members see each other's team jobs (`ci submit --team NAME`).
    Create {
        /// 1 to 64 letters, digits, `-`, `_` and `.`, e.g. `platform`.
        name: String,
    },
    /// List the teams with their number of members.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a team's members.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a team. Its jobs stay, each visible only to whoever submitted it; its dependency
    /// cache is removed.
    Delete { name: String },
    /// Add a user to a team.
    AddMember {
        /// The team's name.
        team: String,
        #[command(flatten)]
        user: UserRef,
    },
    /// Remove a user from a team: they lose access to the team's jobs at once (open streams
    /// end within seconds).
    RemoveMember {
        /// The team's name.
        team: String,
        #[command(flatten)]
        user: UserRef,
    },
}

/// Runs one `ci-admin team` command.
pub async fn run(pool: &Db, command: TeamCommand, out: &mut impl Write) -> Result<()> {
    match command {
        TeamCommand::Create { name } => {
            let name = name.trim();
            teams::check_name(name).map_err(|e| anyhow!(e))?;
            let team = teams::create(pool, name).await.map_err(|e| match e {
                DbError::TeamNameTaken(name) => {
                    anyhow!("a team named {name} already exists (see `ci-admin team list`)")
                }
                other => anyhow::Error::new(other).context("cannot create the team"),
            })?;
            writeln!(out, "✓ Team created: {}", team.name)?;
            writeln!(
                out,
                "Add members with `ci-admin team add-member {} --email EMAIL`.",
                team.name
            )?;
        }
        TeamCommand::List { json } => {
            let all = teams::list(pool).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
            } else if all.is_empty() {
                writeln!(out, "No teams found.")?;
            } else {
                let rows = all.iter().map(|t| {
                    vec![
                        t.team.name.clone(),
                        t.members.to_string(),
                        local_time(t.team.created_at),
                    ]
                });
                write_table(out, &["NAME", "MEMBERS", "CREATED"], rows)?;
            }
        }
        TeamCommand::Show { name, json } => {
            let team = find(pool, &name).await?;
            let members = teams::members(pool, team.id).await?;
            if json {
                let value = serde_json::json!({
                    "id": team.id,
                    "name": team.name,
                    "created_at": team.created_at,
                    "members": members
                        .iter()
                        .map(|u| serde_json::json!({"id": u.id, "name": u.name, "email": u.email}))
                        .collect::<Vec<_>>(),
                });
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
            } else {
                writeln!(out, "Team: {}", team.name)?;
                writeln!(out, "Created: {}", local_time(team.created_at))?;
                if members.is_empty() {
                    writeln!(out, "No members.")?;
                } else {
                    let rows = members
                        .iter()
                        .map(|u| vec![u.name.clone(), u.email.clone(), u.id.to_string()]);
                    write_table(out, &["MEMBER", "EMAIL", "ID"], rows)?;
                }
            }
        }
        TeamCommand::Delete { name } => {
            let team = find(pool, &name).await?;
            if !teams::delete(pool, team.id).await? {
                bail!("the team {} was deleted meanwhile", team.name);
            }
            writeln!(out, "✓ Team deleted: {}", team.name)?;
        }
        TeamCommand::AddMember { team, user } => {
            let team = find(pool, &team).await?;
            let user = resolve_user(pool, user.email, user.user_id).await?;
            if teams::add_member(pool, team.id, user.id).await? {
                writeln!(out, "✓ {} added to {}", user.email, team.name)?;
            } else {
                writeln!(out, "{} is already a member of {}", user.email, team.name)?;
            }
        }
        TeamCommand::RemoveMember { team, user } => {
            let team = find(pool, &team).await?;
            let user = resolve_user(pool, user.email, user.user_id).await?;
            if !teams::remove_member(pool, team.id, user.id).await? {
                bail!(
                    "{} is not a member of {} (`ci-admin team show {}` lists its members)",
                    user.email,
                    team.name,
                    team.name
                );
            }
            writeln!(out, "✓ {} removed from {}", user.email, team.name)?;
        }
    }
    Ok(())
}

/// The team of that name, or an error that says how to find the right one.
async fn find(pool: &Db, name: &str) -> Result<Team> {
    teams::find_by_name(pool, name.trim())
        .await
        .context("cannot read the teams")?
        .ok_or_else(|| anyhow!("no team named {name:?} (`ci-admin team list` shows them)"))
}
