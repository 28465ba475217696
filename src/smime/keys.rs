//! Where a command's private keys are reached: a PKCS#11 module this process loaded, or the
//! session agent that holds a logged-in session for the user. The S/MIME operations take a
//! [`KeyAccess`] and from there see only [`KeyBackend`]s.

use crate::agent::Client;
use crate::error::{Error, Result};
use crate::keyops::KeyBackend;
use crate::token::{LoginOptions, Module, TokenSelector};

/// How to reach the keys.
#[derive(Clone, Copy)]
pub enum KeyAccess<'a> {
    /// Open the token through the module directly (a login per process).
    Module(&'a Module),
    /// Ask the running agent (its token's login is shared).
    Agent(&'a Client),
}

impl<'a> From<&'a Module> for KeyAccess<'a> {
    fn from(m: &'a Module) -> Self {
        KeyAccess::Module(m)
    }
}

impl<'a> From<&'a Client> for KeyAccess<'a> {
    fn from(c: &'a Client) -> Self {
        KeyAccess::Agent(c)
    }
}

/// One opened key store: a token's session, or the agent.
pub(crate) struct OpenKeys<'c> {
    /// "label (serial ...)" for messages.
    pub name: String,
    pub backend: Box<dyn KeyBackend + 'c>,
}

impl<'a> KeyAccess<'a> {
    /// Every store that may hold a key (no login yet): the tokens `selector` names, or the
    /// agent's token.
    pub(crate) fn open_all<'c>(
        self,
        selector: Option<&TokenSelector>,
        login: LoginOptions<'c>,
    ) -> Result<Vec<OpenKeys<'c>>>
    where
        'a: 'c,
    {
        match self {
            KeyAccess::Module(module) => module
                .candidate_tokens(selector)?
                .into_iter()
                .map(|info| {
                    Ok(OpenKeys {
                        name: info.display_name(),
                        backend: Box::new(module.open_token(&info, login)?),
                    })
                })
                .collect(),
            KeyAccess::Agent(client) => Ok(vec![agent_keys(client, selector, login)?]),
        }
    }

    /// The one store a command without recipients to match uses.
    pub(crate) fn open_one<'c>(
        self,
        selector: Option<&TokenSelector>,
        login: LoginOptions<'c>,
    ) -> Result<OpenKeys<'c>>
    where
        'a: 'c,
    {
        match self {
            KeyAccess::Module(module) => {
                let info = module.single_token(selector)?;
                Ok(OpenKeys {
                    name: info.display_name(),
                    backend: Box::new(module.open_token(&info, login)?),
                })
            }
            KeyAccess::Agent(client) => agent_keys(client, selector, login),
        }
    }
}

fn agent_keys<'c>(
    client: &'c Client,
    selector: Option<&TokenSelector>,
    login: LoginOptions<'c>,
) -> Result<OpenKeys<'c>> {
    let token = &client.status().token;
    if let Some(sel) = selector
        && !sel.matches(token)
    {
        return Err(Error::Token(format!(
            "the running agent holds {}, not the token --token names; use --no-agent, or stop \
             the agent and start it for that token",
            token.display_name()
        )));
    }
    Ok(OpenKeys {
        name: format!("{} (through the agent)", token.display_name()),
        backend: Box::new(client.backend(login)),
    })
}
