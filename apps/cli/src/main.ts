import { parseArgs } from 'node:util'
import { connect } from './api.ts'
import { type Command, commands, type OptionSpec } from './commands.ts'
import { resolveContext } from './config.ts'
import { CliError, ExitCode } from './errors.ts'
import { outputFormat } from './output.ts'

const version = '0.1.0'

const globalOptions: Record<string, OptionSpec> = {
  url: { type: 'string', value: 'URL', description: 'Kiln API URL (env KILN_URL).' },
  token: { type: 'string', value: 'TOKEN', description: 'API token or OIDC access token (env KILN_TOKEN).' },
  project: { type: 'string', short: 'p', value: 'PROJECT', description: 'Project (env KILN_PROJECT).' },
  context: { type: 'string', value: 'NAME', description: 'Saved context to use (env KILN_CONTEXT).' },
  output: {
    type: 'string',
    short: 'o',
    value: 'FORMAT',
    description: 'json, yaml or table (table at a terminal).',
  },
  help: { type: 'boolean', short: 'h', description: 'Show help.' },
}

const exitCodes = `Exit codes:
  0  success
  1  the operation failed or was cancelled, or the API could not be reached
  2  usage: unknown command or flag, invalid value (the API's 400/422)
  3  not found (404)
  4  not logged in or not allowed (401/403)
  5  conflict with the current state (409/412), e.g. another operation is running`

function optionLines(options: Record<string, OptionSpec>) {
  return Object.entries(options).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.value ? ` ${o.value}` : ''}`
    return `  ${flag.padEnd(34)} ${o.description}`
  })
}

function generalHelp(prefix: string[] = []): string {
  const shown = commands.filter((c) => prefix.every((p, i) => c.path[i] === p))
  return [
    'kiln: Kubernetes clusters from Kiln, for people and CI pipelines.',
    '',
    'Usage: kiln COMMAND [ARGS] [FLAGS]',
    '',
    'Commands:',
    ...shown.map((c) => `  ${[...c.path, ...c.args].join(' ').padEnd(36)} ${c.summary}`),
    '',
    'Global flags:',
    ...optionLines(globalOptions),
    '',
    exitCodes,
    '',
    'Run kiln COMMAND --help for its flags and examples. In CI, set KILN_URL, KILN_TOKEN and KILN_PROJECT.',
  ].join('\n')
}

function commandHelp(command: Command): string {
  return [
    `${command.summary}.`,
    '',
    `Usage: kiln ${[...command.path, ...command.args].join(' ')} [FLAGS]`,
    '',
    'Flags:',
    ...optionLines(command.options),
    '',
    'Global flags:',
    ...optionLines(
      Object.fromEntries(Object.entries(globalOptions).filter(([n]) => !(n in command.options))),
    ),
    '',
    'Examples:',
    ...command.examples.map((e) => `  ${e}`),
    '',
    exitCodes,
  ]
    .filter((line, i, all) => !(line === 'Flags:' && all[i + 1] === ''))
    .join('\n')
}

/** The longest command path the leading words spell. */
function findCommand(words: string[]): Command | undefined {
  let best: Command | undefined
  for (const c of commands) {
    if (c.path.every((p, i) => words[i] === p) && (!best || c.path.length > best.path.length)) best = c
  }
  return best
}

export async function main(argv: string[], io: { stdout: NodeJS.WriteStream; stderr: NodeJS.WriteStream }) {
  const words: string[] = []
  for (const a of argv) {
    if (a.startsWith('-')) break
    words.push(a)
  }
  if (argv[0] === '--version') {
    io.stdout.write(`kiln ${version}\n`)
    return ExitCode.ok
  }
  const command = findCommand(words)
  if (!command) {
    const known = words.length > 0 && commands.some((c) => c.path[0] === words[0])
    const asksHelp = argv.length === 0 || argv.includes('--help') || argv.includes('-h')
    if (asksHelp || known) {
      io[asksHelp ? 'stdout' : 'stderr'].write(`${generalHelp(known ? [words[0]!] : [])}\n`)
      return asksHelp ? ExitCode.ok : ExitCode.usage
    }
    io.stderr.write(`kiln: unknown command '${words.join(' ')}'. Run kiln --help.\n`)
    return ExitCode.usage
  }
  const rest = argv.slice(command.path.length)
  // The command's own flags win over global ones of the same name (kubeconfig's -o is a file).
  const options = { ...globalOptions, ...command.options }
  let parsed: ReturnType<typeof parseArgs>
  try {
    parsed = parseArgs({
      args: rest,
      options: Object.fromEntries(
        Object.entries(options).map(([name, o]) => [
          name,
          { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) },
        ]),
      ),
      allowPositionals: true,
      strict: true,
    })
  } catch (error) {
    io.stderr.write(
      `kiln ${command.path.join(' ')}: ${(error as Error).message}\nRun kiln ${command.path.join(' ')} --help.\n`,
    )
    return ExitCode.usage
  }
  const { values, positionals } = parsed as {
    values: Record<string, string | boolean | string[] | undefined>
    positionals: string[]
  }
  if (values.help) {
    io.stdout.write(`${commandHelp(command)}\n`)
    return ExitCode.ok
  }
  if (positionals.length !== command.args.length) {
    io.stderr.write(
      `kiln ${command.path.join(' ')}: expected ${command.args.length ? command.args.join(' ') : 'no arguments'}, got ${positionals.length ? positionals.join(' ') : 'none'}.\nRun kiln ${command.path.join(' ')} --help.\n`,
    )
    return ExitCode.usage
  }
  const flag = (name: string) => (typeof values[name] === 'string' ? (values[name] as string) : undefined)
  const connectionFlags = {
    ...(flag('context') ? { context: flag('context') } : {}),
    ...(flag('url') ? { url: flag('url') } : {}),
    ...(flag('token') ? { token: flag('token') } : {}),
    ...(flag('project') ? { project: flag('project') } : {}),
  }
  const tty = Boolean(io.stdout.isTTY)
  try {
    await command.run(
      {
        api: async () => connect(await resolveContext(connectionFlags)),
        out: {
          format: command.options.output ? 'table' : outputFormat(flag('output'), tty),
          tty,
          write: (text) => io.stdout.write(text),
        },
        progress: {
          tty: Boolean(io.stderr.isTTY),
          write: (text) => io.stderr.write(text),
          ...(io.stderr.columns ? { columns: io.stderr.columns } : {}),
        },
        connectionFlags,
      },
      { values, positionals },
    )
    return ExitCode.ok
  } catch (error) {
    if (error instanceof CliError) {
      io.stderr.write(`Error: ${error.message}\n`)
      return error.exitCode
    }
    io.stderr.write(`kiln: unexpected error: ${(error as Error).stack ?? String(error)}\n`)
    return ExitCode.failed
  }
}

const code = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr })
// Exit once what was written reached the pipes; idle keep-alive sockets must not hold the process.
process.exitCode = code
process.stdout.write('', () => process.stderr.write('', () => process.exit(code)))
