/*
 * account.c — `parley delete-account`: the password, a confirmation (the
 * user id typed back, or --yes), DeleteAccount, and the saved session
 * removed. Main thread.
 */
#include <string.h>
#include <unistd.h>

#include "app.h"

int
cli_cmd_delete_account(cli_ctx *ctx, int argc, char **argv)
{
	char pw[1100], typed[RPC_USER_ID_MAX + 2], err[512], prompt[256];
	const char *user = ctx->session.user;
	rpc_status st;
	rpc_code code;
	bool too_long;
	int rc;

	if (!ctx->yes && !isatty(STDIN_FILENO))
		return cli_usage_error(ctx, "standard input is not a terminal: confirm with --yes");
	if ((rc = cli_read_password(ctx, false, pw, sizeof(pw))) != CLI_EXIT_OK)
		return rc;
	if (!ctx->yes) {
		snprintf(prompt, sizeof(prompt),
			 "This deletes the account %s for good. Type %s to confirm: ", user, user);
		if (cli_read_line(STDIN_FILENO, stderr, prompt, true, typed, sizeof(typed),
				  &too_long) < 0 ||
		    strcmp(typed, user) != 0) {
			explicit_bzero(pw, sizeof(pw));
			fprintf(stderr, "parley: not confirmed; the account is kept\n");
			return CLI_EXIT_USAGE;
		}
	}
	code = parley_delete_account(ctx->conn, pw, &st);
	explicit_bzero(pw, sizeof(pw));
	if (code != RPC_OK)
		return cli_fail(code, st.message);
	if (!cli_session_remove(err, sizeof(err)))
		return cli_local_error("%s", err);
	printf("account %s deleted\n", user);
	return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_LOCAL;
}
