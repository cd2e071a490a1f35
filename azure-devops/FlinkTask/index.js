'use strict';
// Azure DevOps entry point of flink-task: finds Python 3.10 or later, creates (or reuses)
// the cached virtual environment with the wheel bundled in this folder, and runs
// `python -m flink_task run` with the task's inputs and service connection in its
// environment. The Python process writes the output variables and the result itself.

// Inputs whose values are secrets, from flink_task/inputs.py (scripts/generate_surfaces.py).
// BEGIN GENERATED secret-inputs
const SECRET_INPUTS = [
  'clientSecret',
  'clientCertificate',
  'clientCertificatePassword',
  'flinkToken',
  'flinkPassword',
  'flinkClientCertificate',
  'flinkClientKey',
];
// END GENERATED secret-inputs

// Authorization parameters of a service connection that are identifiers, not secrets.
// Every other parameter (service principal key, certificate, tokens) is masked.
const PUBLIC_AUTH_PARAMETERS = new Set([
  'AUTHENTICATIONTYPE',
  'SCOPE',
  'SERVICEPRINCIPALID',
  'TENANTID',
  'WORKLOADIDENTITYFEDERATIONISSUER',
  'WORKLOADIDENTITYFEDERATIONSUBJECT',
]);

// Names of the variables the agent started this process with. Loading
// azure-pipelines-task-lib moves INPUT_*, ENDPOINT_AUTH_*, SECRET_* and similar variables
// into its vault and deletes them from process.env, so the names must be read first.
const startupVariableNames = Object.keys(process.env);
// task-lib's getters write each value they return to a debug line, so secret values are
// taken here, before task-lib loads, only to register them as secrets before any getter runs.
const startupSecrets = collectStartupSecrets(process.env);

const tl = require('azure-pipelines-task-lib/task');
const childProcess = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const TASK_DIR = __dirname;
const MIN_PYTHON_CHECK = 'import sys; sys.exit(sys.version_info < (3, 10))';
const BOOTSTRAP_TIMEOUT_MS = 20 * 60 * 1000;
const EXIT_INVALID_INPUT = 2;
const EXIT_UNEXPECTED = 3;
const EXIT_CANCELLED = 130;
const EXIT_MEANINGS = {
  1: 'the action failed or timed out',
  2: 'invalid input or configuration',
  3: 'unexpected error',
  130: 'cancelled',
};

// Returns the values of the secret inputs and of the non-public endpoint authorization
// parameters, including the job access token.
function collectStartupSecrets(environment) {
  const secrets = [];
  for (const name of SECRET_INPUTS) {
    secrets.push(environment['INPUT_' + name.toUpperCase()]);
  }
  const prefix = 'ENDPOINT_AUTH_PARAMETER_';
  for (const [name, value] of Object.entries(environment)) {
    if (!name.toUpperCase().startsWith(prefix)) {
      continue;
    }
    // The rest is <connection id>_<KEY>; connection ids contain no underscore.
    const rest = name.substring(prefix.length);
    const key = rest.substring(rest.indexOf('_') + 1).toUpperCase();
    if (!PUBLIC_AUTH_PARAMETERS.has(key)) {
      secrets.push(value);
    }
  }
  return secrets.filter((value) => typeof value === 'string' && value.trim() !== '');
}

// Registers each secret with the agent's masker. task-lib rejects multi-line secrets, so a
// certificate is registered line by line.
function registerSecrets(secrets) {
  for (const secret of secrets) {
    for (const line of secret.split(/\r?\n/)) {
      if (line.trim() !== '') {
        tl.setSecret(line.trim());
      }
    }
  }
}

function readTaskManifest() {
  return JSON.parse(fs.readFileSync(path.join(TASK_DIR, 'task.json'), 'utf8'));
}

// Returns INPUT_<NAME> for every input of task.json that has a value, read through task-lib.
function collectInputVariables(manifest) {
  const variables = {};
  for (const input of manifest.inputs) {
    const value = tl.getInput(input.name, false);
    if (value !== undefined && value !== null) {
      variables['INPUT_' + input.name.toUpperCase()] = value;
    }
  }
  return variables;
}

// Returns the names of the startup variables that begin with `prefix`, compared without case
// because the agent keeps the connection id's own case and upper-cases only the key.
function namesWithPrefix(names, prefix) {
  const wanted = prefix.toUpperCase();
  return names.filter((name) => name.toUpperCase().startsWith(wanted));
}

// Returns the service connection's ENDPOINT_* variables under the names the agent used.
function collectEndpointVariables(connectionId) {
  const variables = {};
  const url = tl.getEndpointUrl(connectionId, true);
  if (url) {
    variables['ENDPOINT_URL_' + connectionId] = url;
  }
  const scheme = tl.getEndpointAuthorizationScheme(connectionId, true);
  if (scheme) {
    variables['ENDPOINT_AUTH_SCHEME_' + connectionId] = scheme;
  }

  const parameterPrefix = 'ENDPOINT_AUTH_PARAMETER_' + connectionId + '_';
  const parameterNames = new Set(namesWithPrefix(startupVariableNames, parameterPrefix));
  const authorization = tl.getEndpointAuthorization(connectionId, true);
  for (const key of Object.keys((authorization && authorization.parameters) || {})) {
    parameterNames.add(parameterPrefix + key.toUpperCase());
  }
  for (const name of parameterNames) {
    const key = name.substring(parameterPrefix.length);
    const value = tl.getEndpointAuthorizationParameter(connectionId, key, true);
    if (value) {
      variables[name] = value;
    }
  }

  // task-lib leaves ENDPOINT_DATA_* in process.env; they are copied under their own names.
  for (const name of namesWithPrefix(Object.keys(process.env), 'ENDPOINT_DATA_' + connectionId)) {
    variables[name] = process.env[name];
  }
  return variables;
}

// Returns the environment of the Python process: the agent's variables that task-lib left,
// plus the inputs, the selected connection, the job access token and the OIDC request URL.
function buildChildEnvironment(manifest) {
  const environment = Object.assign({}, process.env, collectInputVariables(manifest));
  const connectionId = tl.getInput('azureSubscription', false);
  if (connectionId) {
    Object.assign(environment, collectEndpointVariables(connectionId));
  }
  const accessToken = tl.getEndpointAuthorizationParameter('SYSTEMVSSCONNECTION', 'AccessToken', true);
  if (accessToken) {
    environment.ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN = accessToken;
  }
  const oidcRequestUri = tl.getVariable('System.OidcRequestUri');
  if (oidcRequestUri) {
    environment.SYSTEM_OIDCREQUESTURI = oidcRequestUri;
  }
  return environment;
}

// Returns [command, args] of the first Python 3.10 or later found on PATH, or null.
function findBasePython() {
  // On Windows, python comes first because UsePythonVersion@0 puts the selected version on
  // PATH as python, while the py launcher picks the newest installed version.
  const candidates = process.platform === 'win32'
    ? [['python', []], ['py', ['-3']], ['python3', []]]
    : [['python3', []], ['python', []]];
  for (const [command, args] of candidates) {
    const probe = childProcess.spawnSync(command, [...args, '-c', MIN_PYTHON_CHECK], {
      stdio: 'ignore',
      timeout: 60 * 1000,
    });
    if (probe.status === 0) {
      return [command, args];
    }
  }
  return null;
}

function findBundledWheel() {
  const folder = path.join(TASK_DIR, 'python');
  const wheels = fs.existsSync(folder)
    ? fs.readdirSync(folder).filter((name) => name.endsWith('.whl'))
    : [];
  if (wheels.length !== 1) {
    throw new Error(`expected one flink_task wheel in ${folder}, found ${wheels.length}; the task package is incomplete`);
  }
  return path.join(folder, wheels[0]);
}

// Returns the interpreter of the cached virtual environment, creating it when needed.
function prepareVirtualEnvironment(basePython) {
  const cacheRoot = tl.getVariable('Agent.ToolsDirectory')
    || tl.getVariable('Agent.TempDirectory')
    || os.tmpdir();
  const [command, args] = basePython;
  const result = childProcess.spawnSync(
    command,
    [...args, path.join(TASK_DIR, 'bootstrap_venv.py'), '--source', findBundledWheel(), '--cache-root', cacheRoot],
    { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', timeout: BOOTSTRAP_TIMEOUT_MS },
  );
  if (result.error) {
    throw new Error(`setting up the Python environment failed: ${result.error.message}`);
  }
  if (result.status !== 0) {
    throw new Error(`setting up the Python environment failed with exit code ${result.status}; the lines above show why`);
  }
  const lines = result.stdout.split(/\r?\n/).filter((line) => line.trim() !== '');
  return lines[lines.length - 1].trim();
}

function resolvePython() {
  const configured = tl.getVariable('FLINK_TASK_PYTHON');
  if (configured) {
    console.log(`flink-task: using FLINK_TASK_PYTHON=${configured} as is`);
    return configured;
  }
  const basePython = findBasePython();
  if (!basePython) {
    return null;
  }
  return prepareVirtualEnvironment(basePython);
}

function exitCodeOf(code, signal) {
  if (code !== null) {
    return code;
  }
  return 128 + (os.constants.signals[signal] || 0);
}

function run() {
  registerSecrets(startupSecrets);
  let python;
  let environment;
  try {
    python = resolvePython();
    if (!python) {
      tl.setResult(
        tl.TaskResult.Failed,
        'Python 3.10 or later was not found on PATH (python3, python, or py -3 on Windows). '
          + 'Add a UsePythonVersion@0 step before this task or install Python on the agent.',
      );
      process.exit(EXIT_INVALID_INPUT);
    }
    environment = buildChildEnvironment(readTaskManifest());
  } catch (error) {
    tl.setResult(tl.TaskResult.Failed, `flink-task: ${error.message}`);
    process.exit(EXIT_UNEXPECTED);
  }

  const child = childProcess.spawn(python, ['-I', '-m', 'flink_task', 'run'], {
    env: environment,
    stdio: 'inherit',
  });
  // The agent signals this process on cancellation. Python needs the signal to report the
  // job's last known state and exit 130, so the wrapper passes it on and waits.
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
      }
    });
  }
  child.on('error', (error) => {
    tl.setResult(tl.TaskResult.Failed, `flink-task: starting ${python} failed: ${error.message}`);
    process.exit(EXIT_UNEXPECTED);
  });
  child.on('exit', (code, signal) => {
    const exitCode = exitCodeOf(code, signal);
    if (exitCode !== 0) {
      const meaning = EXIT_MEANINGS[exitCode] || 'see the lines above';
      const result = exitCode === EXIT_CANCELLED ? tl.TaskResult.Cancelled : tl.TaskResult.Failed;
      tl.setResult(result, `flink-task exited with code ${exitCode}: ${meaning}`);
    }
    process.exit(exitCode);
  });
}

run();
