<?php
// The fragile legacy app of benches/fragile/run.sh: 20 ms of work per request. Run by PHP's
// built-in server with PHP_CLI_SERVER_WORKERS=4, it serves about 200 requests a second and
// queues the rest in its accept backlog.
usleep(20000);
header('Content-Type: application/json');
echo '{"ok":true}';
