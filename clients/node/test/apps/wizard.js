'use strict';
// The flow of a legacy registration bot, written against a plain object.
// The apps here pass statehold's conversationStates() where the legacy bot
// had `const conversationStates = {}`: the flow itself is unchanged.

// `{ plan: true }`: a fourth step (the plan) after the email, for the bots
// that answer first and work afterwards (deferred.test.js).
function handle(conversationStates, userId, text, { plan = false } = {}) {
  const state = conversationStates[userId];
  if (text === '/start' || state === undefined) {
    conversationStates[userId] = { step: 'name' };
    return "Welcome! What's your name?";
  }
  if (state.step === 'name') {
    state.name = text;
    state.step = 'email';
    return `Nice to meet you, ${text}. Your email?`;
  }
  if (state.step === 'email' && plan) {
    state.email = text;
    state.step = 'plan';
    return 'Which plan: basic or pro?';
  }
  if (state.step === 'email') {
    const name = state.name;
    delete conversationStates[userId];
    return `Registered ${name} <${text}>. Done!`;
  }
  if (state.step === 'plan') {
    const { name, email } = state;
    delete conversationStates[userId];
    return `Registered ${name} <${email}> on the ${text} plan. Done!`;
  }
  return 'Session expired';
}

function args() {
  const argv = process.argv.slice(2);
  const i = argv.indexOf('--port');
  return { port: i >= 0 ? Number(argv[i + 1]) : 0, bodyMode: argv.includes('--body-mode') };
}

module.exports = { handle, args };
