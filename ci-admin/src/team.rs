//! `ci-admin team`: create, list, show and delete teams, and add and remove their members.

use std::io::Write;

use anyhow::{anyhow, bail, Context, Result};
use ci_common::db::audit::{self, Action, Outcome};
use ci_common::db::teams::{self, Team};
use ci_common::db::{Db, DbError};
use clap::Subcommand;
use serde_json::json;

use crate::{admin, local_time, resolve_user, write_table, UserRef};

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
            let entry = admin().entry(Action::TeamCreate, format!("team {name}"));
            let mut tx = pool.begin_write().await?;
            let team = match teams::create(&mut tx, name).await {
                Ok(team) => team,
                Err(DbError::TeamNameTaken(name)) => {
                    drop(tx);
                    let failed = entry
                        .outcome(Outcome::Failed)
                        .detail(json!({ "error": "name_taken" }));
                    audit::record(pool, &failed).await?;
                    bail!("a team named {name} already exists (see `ci-admin team list`)");
                }
                Err(other) => {
                    return Err(anyhow::Error::new(other).context("cannot create the team"))
                }
            };
            audit::record(&mut tx, &entry.detail(json!({ "team_id": team.id }))).await?;
            tx.commit().await?;
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
            let mut tx = pool.begin_write().await?;
            if !teams::delete(&mut tx, team.id).await? {
                bail!("the team {} was deleted meanwhile", team.name);
            }
            let entry = admin()
                .entry(Action::TeamDelete, format!("team {}", team.name))
                .detail(json!({ "team_id": team.id }));
            audit::record(&mut tx, &entry).await?;
            tx.commit().await?;
            writeln!(out, "✓ Team deleted: {}", team.name)?;
        }
        TeamCommand::AddMember { team, user } => {
            let team = find(pool, &team).await?;
            let user = resolve_user(pool, user.email, user.user_id).await?;
            let mut tx = pool.begin_write().await?;
            if teams::add_member(&mut tx, team.id, user.id).await? {
                let entry = admin()
                    .entry(Action::TeamAddMember, format!("team {}", team.name))
                    .detail(json!({ "user_id": user.id, "email": user.email }));
                audit::record(&mut tx, &entry).await?;
                tx.commit().await?;
                writeln!(out, "✓ {} added to {}", user.email, team.name)?;
            } else {
                writeln!(out, "{} is already a member of {}", user.email, team.name)?;
            }
        }
        TeamCommand::RemoveMember { team, user } => {
            let team = find(pool, &team).await?;
            let user = resolve_user(pool, user.email, user.user_id).await?;
            let mut tx = pool.begin_write().await?;
            if !teams::remove_member(&mut tx, team.id, user.id).await? {
                bail!(
                    "{} is not a member of {} (`ci-admin team show {}` lists its members)",
                    user.email,
                    team.name,
                    team.name
                );
            }
            let entry = admin()
                .entry(Action::TeamRemoveMember, format!("team {}", team.name))
                .detail(json!({ "user_id": user.id, "email": user.email }));
            audit::record(&mut tx, &entry).await?;
            tx.commit().await?;
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
