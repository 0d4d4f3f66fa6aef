# 控制台的中文文字。每条消息在 en.ftl 中有相同的 id；测试检查两个文件的 id 一致，
# 且代码用到每一条。语法：https://projectfluent.org/fluent/guide/

## 框架、导航与错误

nav-inbox = 待办
nav-cases = 工单
nav-team = 团队
nav-account = 账户
sign-in = 登录
sign-out = 退出
error-title = 错误 { $status }
back-to-inbox = 返回待办
no-such-language = 没有这种语言。
store-failed = 存储出错：{ $error }
request-failed = 请求失败。
form-from-another-site = 此表单来自其他网站，已拒绝。
form-unreadable = 无法读取表单：{ $error }
form-out-of-date = 此表单已过期（或不是从控制台提交的）：请重新打开页面后再提交。
sign-out-failed = 退出失败，请重试。

## 登录

user-name = 用户名
password = 密码
first-password-hint = 首次登录的密码由管理员设置
too-many-failures = 登录失败次数过多：请在 { $secs } 秒后重试，或联系管理员。
sign-in-refused = 用户名或密码不正确。

## 多个页面共用的词

process = 流程
step = 步骤
role = 角色
roles = 角色
status = 状态
case = 工单
task = 任务
customer = 客户
assignee = 处理人
assignees = 处理人
unassigned = 未分配
me = 我
any = 全部
anyone = 任何人
all = 全部
show = 显示
open = 打开
save = 保存
delete = 删除
close = 关闭
name = 名称
reason = 原因
due = 期限
overdue = 已超时
escalated = 已升级
due-today = 今日到期
paused = 暂停计时
priority = 优先级
yes = 是
none = 无。
required = 必填
at-step = 所在步骤
started = 开始时间
to-whom = 交给谁
to-whom-choose = 交给…

## 状态

status-running = 进行中
status-suspended = 已挂起
status-incident = 异常
status-completed = 已完成
status-cancelled = 已取消

## 工作时间

minutes = { $m } 分钟
hours = { $h } 小时
hours-minutes = { $h } 小时 { $m } 分钟
time-left = 剩余 { $time }
time-over = 超出 { $time }
sla-used = 已用 { $allowed } 工作时间的 { $percent }%
no-deadline = 无期限

## 待办

saved-views = 已保存的视图
changed-tasks = 个任务有新变化
show-them = 刷新
scope-all = 我的和我所在角色的
scope-mine = 分配给我的
filter = 筛选
inbox-truncated = 未完成的任务多于一次读取的数量（每个待办 { $n } 个）：请筛选以查看其余任务。
with-selected = 对所选任务：
claim = 认领
release = 放回
reassign = 改派
delegate = 委托
select-all = 全选
select-task = 选择 { $task }
time-left-heading = 剩余时间
nothing-to-do = 这里没有要做的事。
inbox-soonest = 显示 { $matching } 个符合条件的任务中最紧急的 { $shown } 个：筛选以查看其他任务。
inbox-count = { $total } 个未完成任务中有 { $matching } 个符合条件
save-view = 保存此视图
view-for = 给
view-me-only = 仅我自己
view-everyone-in = { $role } 的所有人
view-to-delete = 要删除的视图
view-saved-by = { $who } 保存
view-saved-by-shared = { $who } 保存，共享给 { $role }
view-name-needed = 视图名称须为 1 到 { $max } 个字符。
view-owner-wrong = 视图只能给自己或自己所在的角色。
view-saved = 视图“{ $name }”已保存。
view-deleted = 视图“{ $name }”已删除。
view-not-yours = 没有这个属于你的视图。
in-progress-by = 处理中：{ $who }
draft-by = { $who } 的草稿
task-completed = 任务 { $task } 已完成。
select-tasks-first = 请先选择一个或多个任务。
not-a-task = 不是任务
choose-to-whom = 请选择交给谁
no-such-action-named = 没有“{ $action }”这个操作。
claimed = 已认领
released = 已放回
reassigned-to = 已改派给 { $to }
delegated-to = 已委托给 { $to }
keys = 快捷键
key-next-previous = 下一个 / 上一个任务
key-open = 打开任务
key-select = 选择
key-claim = 认领所选（或当前）任务
key-filters = 筛选
key-help = 本帮助

## 任务

task-gone = 此任务已不再进行
task-gone-detail = 在你提交之前，任务 { $task } 已被他人完成或关闭（或已流转）。你填写的内容没有保存。
open-case = 打开工单 { $key }
item = 条目
working-time = 工作时间
in-progress = 处理中
started-by-since = { $who }，自 { $at } 起
draft = 草稿
draft-saved-by = { $who } 于 { $at } 保存（已填入下方）
start-work = 开始处理
claim-it = 认领
asks-nothing = 此步骤无需填写：完成工作后提交即可。
complete = 完成
save-draft = 保存草稿
task-completed-next = 任务 { $task } 已完成。接下来是这个任务：
answers-need-fix = 有些内容需要修改。
draft-saved = 草稿已保存：稍后可在此处或从待办继续。
whole-number-needed = 需要整数
time-needed = 需要日期和时间
number-needed = 需要数字

## 工单

outcome = 结果
rules-version = 当时生效的规则版本
timer-due = 任务 { $task } 的期限
timer-escalation = 任务 { $task } 的升级
timer-threshold = 任务 { $task } 的 SLA 阈值
runs-for-case = 属于工单
sub-cases = 子流程工单
fields = 字段
open-tasks = 未完成任务
diagram = 流程图
where-it-is = 当前位置
legend-now = 当前
legend-done = 已完成
waiting-for = 等待中
history = 历史
actions = 操作
message = 消息
send-message = 发送消息
change-fields = 修改字段
save-changed-fields = 保存修改的字段
suspend = 挂起（暂停处理）
resume = 恢复
cancel-understood = 我了解取消后无法撤销
cancel-case = 取消工单
not-a-case = “{ $id }”不是工单。
choose-message = 请选择要发送的消息。
cancel-tick-box = 请勾选确认：取消后无法撤销。
cancel-say-why = 请说明取消工单的原因。
no-such-action = 没有这个操作。
message-delivered = 消息 { $message } 已送达；工单现在{ $status }。
case-is-now = 工单现在{ $status }。
nothing-changed = 没有任何修改。
fields-changed = 已修改字段：{ $names }。
values-need-fix = 有些值需要修改。

## 工单列表

not-a-day = “{ $text }”不是日期：请写成 YYYY-MM-DD。
no-case-with-key = 没有业务编号为 { $key } 的工单。
assigned-to = 处理人
started-from = 开始日期从
started-to = 到
search-field = 字段
field-not-indexed = 不能按 `{ $field }` 查找案件：流程未为它建立索引
search-value = 等于
export-csv = 导出 CSV
business-key = 业务编号
no-case = 没有工单。
looked-through = 已查看 { $n } 个工单；后面可能还有符合条件的。
look-further = 继续查找 →
next-page = 后 { $n } 个 →

## 团队

team-forbidden = 团队页面仅供有改派权限（“reassign”）的人使用。
team-empty = 规则中没有人向你汇报（people.toml 中的 reports_to）。
person = 人员
today = 今天
open-count = 未完成
away = 请假
off-duty = 不当班
working = 在岗
due-today-heading = 今日到期
overdue-heading = 已超时
give-all-heading = 将一个人的所有未完成任务交给另一个人
from-whom = 从
reassign-all = 全部改派
by-role = 按角色
by-role-hint = 团队按角色持有的工作（一个人的工作计入其每个角色）。
choose-to-whom-and-why = 请选择交给谁，并说明原因。
may-not-reassign = { $who } 无权改派工作。
reassigned-all = 已将 { $from } 的 { $n } 个未完成任务交给 { $to }。

## 账户

change-password = 修改密码
current-password = 当前密码
new-password = 新密码（至少 { $min } 个字符）
new-password-again = 再次输入新密码
change-it = 修改
change-password-hint = 修改后，你在其他地方的登录都会退出。
your-sessions = 你的会话
signed-in-at = 登录时间
last-seen = 最近活动
from = 来源
this-session = 当前会话
end = 结束
end-all-others = 结束其他所有会话
current-password-wrong = 当前密码不正确。
new-passwords-differ = 两次输入的新密码不一致。
new-password-refused = 新密码被拒绝：{ $why }。
password-changed = 密码已修改。
sessions-ended = 已结束 { $n } 个会话。
