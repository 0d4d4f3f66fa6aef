# The console's words in English. Each message has the same id in zh.ftl; the tests check
# that both files hold the same ids and that the code asks for each of them.
# Syntax: https://projectfluent.org/fluent/guide/

## The frame, navigation and errors

nav-inbox = Inbox
nav-cases = Cases
nav-team = Team
nav-account = Account
sign-in = Sign in
sign-out = Sign out
error-title = Error { $status }
back-to-inbox = Back to the inbox
no-such-language = No such language.
store-failed = The store failed: { $error }
request-failed = The request failed.
form-from-another-site = This form was sent from another site and is refused.
form-unreadable = The form could not be read: { $error }
form-out-of-date = This form is out of date (or was not sent from the console): open the page again and send it again.
sign-out-failed = Signing out failed: try again.

## Signing in

user-name = User name
password = Password
first-password-hint = Your administrator sets your first password
too-many-failures = Too many failed sign-ins: try again in { $secs } seconds, or ask your administrator.
sign-in-refused = The user name or the password is not right.

## Words used on several pages

process = Process
step = Step
role = Role
roles = Roles
status = Status
case = Case
task = Task
customer = Customer
assignee = Assignee
assignees = Assignees
unassigned = unassigned
me = me
any = any
anyone = anyone
all = All
show = Show
open = Open
save = Save
delete = Delete
close = Close
name = Name
reason = reason
due = Due
overdue = overdue
escalated = escalated
due-today = due today
paused = paused
priority = priority
yes = yes
none = None.
required = required
at-step = At step
started = Started
to-whom = to whom
to-whom-choose = to…

## Statuses

status-running = running
status-suspended = suspended
status-incident = incident
status-completed = completed
status-cancelled = cancelled

## Working time

minutes = { $m } min
hours = { $h } h
hours-minutes = { $h } h { $m } min
time-left = { $time } left
time-over = { $time } over
sla-used = { $percent }% of { $allowed } working time used
no-deadline = no deadline

## The inbox

saved-views = saved views
changed-tasks = new or changed tasks
show-them = show
scope-all = mine and my roles'
scope-mine = assigned to me
filter = Filter
inbox-truncated = More tasks are open than the inbox reads at once ({ $n } per inbox): filter to see the rest.
with-selected = With the selected:
claim = Claim
release = Release
reassign = Reassign
delegate = Delegate
select-all = select all
select-task = select { $task }
time-left-heading = Time left
nothing-to-do = Nothing to do here.
inbox-soonest = The { $shown } soonest of { $matching } tasks that match: filter to see the others.
inbox-count = { $matching } of { $total } open tasks match
save-view = Save this view
view-for = For
view-me-only = me only
view-everyone-in = everyone in { $role }
view-to-delete = view to delete
view-saved-by = saved by { $who }
view-saved-by-shared = saved by { $who }, shared with { $role }
view-name-needed = A view needs a name of 1 to { $max } characters.
view-owner-wrong = A view is for yourself or for one of your roles.
view-saved = View “{ $name }” saved.
view-deleted = View “{ $name }” deleted.
view-not-yours = No such view of yours.
in-progress-by = in progress: { $who }
draft-by = draft by { $who }
task-completed = Task { $task } completed.
select-tasks-first = Select one or more tasks first.
not-a-task = not a task
choose-to-whom = choose to whom
no-such-action-named = No action “{ $action }”.
claimed = claimed
released = released
reassigned-to = reassigned to { $to }
delegated-to = delegated to { $to }
keys = Keys
key-next-previous = next / previous task
key-open = open the task
key-select = select it
key-claim = claim the selected (or this) task
key-filters = filters
key-help = this help

## A task

task-gone = This task is no longer open
task-gone-detail = Task { $task } was completed or closed by someone else (or moved on) before you sent it. Nothing you typed was saved.
open-case = Open case { $key }
item = Item
working-time = Working time
in-progress = In progress
started-by-since = { $who } since { $at }
draft = Draft
draft-saved-by = saved by { $who } at { $at } (filled in below)
start-work = Start work
claim-it = Claim it
asks-nothing = This step asks nothing: complete it when the work is done.
complete = Complete
save-draft = Save draft
task-completed-next = Task { $task } completed. Next here:
answers-need-fix = Some answers need a fix.
draft-saved = Draft saved: finish it later, here or from the inbox.
whole-number-needed = a whole number is needed
time-needed = a date and time is needed
number-needed = a number is needed

## A case

outcome = outcome
rules-version = rules version in force
timer-due = deadline of task { $task }
timer-escalation = escalation of task { $task }
timer-threshold = SLA threshold of task { $task }
runs-for-case = Runs for case
sub-cases = Sub-process cases
fields = Fields
open-tasks = Open tasks
diagram = process diagram
where-it-is = Where it is
legend-now = now
legend-done = done
waiting-for = Waiting for
history = History
actions = Actions
message = Message
send-message = Send the message
change-fields = Change fields
save-changed-fields = Save the changed fields
suspend = Suspend (put on hold)
resume = Resume
cancel-understood = I understand cancelling cannot be undone
cancel-case = Cancel the case
not-a-case = “{ $id }” is not a case.
choose-message = Choose the message to send.
cancel-tick-box = Tick the box to confirm: cancelling cannot be undone.
cancel-say-why = Say why the case is cancelled.
no-such-action = No such action.
message-delivered = Message { $message } delivered; the case is { $status } now.
case-is-now = The case is { $status } now.
nothing-changed = Nothing was changed.
fields-changed = Fields changed: { $names }.
values-need-fix = Some values need a fix.

## Cases

not-a-day = “{ $text }” is not a day: write it as YYYY-MM-DD.
no-case-with-key = No case has the business key { $key }.
assigned-to = Assigned to
started-from = Started from
started-to = to
search-field = Where
field-not-indexed = Cases cannot be searched by `{ $field }`: the process does not index it
search-value = is
export-csv = Export CSV
business-key = Business key
no-case = No case.
looked-through = Looked through { $n } cases; more may match further on.
look-further = Look further →
next-page = Next { $n } →

## The team

team-forbidden = The team page is for those who may reassign work (the “reassign” permission).
team-empty = Nobody reports to you in the rules (reports_to in people.toml).
person = Person
today = Today
open-count = Open
away = away
off-duty = off duty
working = working
due-today-heading = Due today
overdue-heading = Overdue
give-all-heading = Give all of one person's open tasks to another
from-whom = From
reassign-all = Reassign all
by-role = By role
by-role-hint = The work your team holds, by the roles they hold (a person's work counts under each of their roles).
choose-to-whom-and-why = Choose to whom, and say why.
may-not-reassign = { $who } may not reassign work.
reassigned-all = { $n ->
    [one] 1 open task of { $from } given to { $to }.
   *[other] { $n } open tasks of { $from } given to { $to }.
}

## The account

change-password = Change your password
current-password = Current password
new-password = New password ({ $min } characters or more)
new-password-again = New password again
change-it = Change it
change-password-hint = Changing it signs you out everywhere else.
your-sessions = Your sessions
signed-in-at = Signed in
last-seen = Last seen
from = From
this-session = this one
end = End
end-all-others = End all others
current-password-wrong = The current password is not right.
new-passwords-differ = The two new passwords differ.
new-password-refused = The new password is refused: { $why }.
password-changed = Your password is changed.
sessions-ended = { $n ->
    [one] 1 session ended.
   *[other] { $n } sessions ended.
}
