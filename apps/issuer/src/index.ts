export { Browser, type Exchange, type Landing, loginFormAction, signIn, userAccessToken } from './browser.ts'
export {
  cliClient,
  demoUsers,
  type IssuerOptions,
  type IssuerUser,
  newSigningKey,
  portalClient,
  type RunningIssuer,
  startIssuer,
} from './provider.ts'
