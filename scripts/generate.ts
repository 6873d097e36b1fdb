import { writeFile } from 'node:fs/promises'
import { clientTypesPath, openApiPath, renderClientTypes, renderOpenApi } from './generated-artifacts.ts'

const yaml = await renderOpenApi()
await writeFile(openApiPath, yaml)
await writeFile(clientTypesPath, await renderClientTypes(yaml))
console.log(`wrote ${openApiPath} and ${clientTypesPath}`)
