#!/usr/bin/env escript
%% -*- erlang -*-
%%! -noshell -noinput
%% SMTP + STARTTLS client probe on Erlang/OTP ssl, with the ssl application's
%% default client-certificate behaviour: the certfile/keyfile pair is offered,
%% and ssl decides whether to send it (TLS 1.2: always; TLS 1.3: only when an
%% issuer of the chain is listed).
%%
%% usage: probe.erl --host H --port P --cert CHAIN.pem --key KEY.pem --ca CA.pem
%%                  [--tls 1.2|1.3] [--server-name NAME]
%%
%% The socket layer under ssl is this module (cb_info): it passes everything
%% to gen_tcp and watches the client's own TLS 1.2 flight for its Certificate
%% message, so the probe can say whether the certificate was sent.
-module(probe).
-mode(compile).
-export([main/1, send/2, log/2, '$handle_undefined_function'/2]).

-define(TIMEOUT, 10000).
-define(REPLY_MAX, 4096).

main(Argv) ->
    Args = parse(Argv, #{}),
    %% ssl's own reports (alerts) go to stderr: stdout carries the JSON line only.
    _ = logger:remove_handler(default),
    _ = logger:add_handler(default, logger_std_h, #{config => #{type => standard_error}}),
    %% ssl reports an alert it receives only to the logger when the
    %% connection is already gone by the time the probe writes: keep it.
    _ = logger:add_handler(probe_alerts, ?MODULE, #{}),
    case ssl:start() of
        ok -> ok;
        {error, Why} ->
            io:format(standard_error, "missing: erlang-ssl (apt-get install erlang-ssl): ~p~n", [Why]),
            halt(3)
    end,
    {ok, SslVsn} = application:get_key(ssl, vsn),
    Version = "OTP " ++ erlang:system_info(otp_release) ++ ", ssl " ++ SslVsn,
    Res0 = #{version => Version, outcome => "rejected", stage => "connect", error => ""},
    ets:new(probe_flight, [named_table, public, set]),
    ets:new(probe_alert, [named_table, public, set]),
    ets:insert(probe_flight, [{buf, <<>>}, {done, false}, {sent, null}]),
    {Res, Code} = run(Args, Res0),
    %% TLS 1.3 hides the Certificate message: the server's certificate_required
    %% alert says none was sent, its bad_certificate or unknown_ca that one was.
    Seen = case ets:lookup(probe_flight, sent) of
               [{sent, S}] -> S;
               _ -> null
           end,
    Sent = case {Seen, maps:get(tls_alert, Res, none)} of
               {null, certificate_required} -> false;
               {null, bad_certificate} -> true;
               {null, unknown_ca} -> true;
               _ -> Seen
           end,
    io:format("~s~n", [json(Res#{certificate_sent => Sent})]),
    halt(Code).

usage(Msg) ->
    io:format(standard_error,
              "~s~nusage: run --host H --port P --cert CHAIN.pem --key KEY.pem --ca CA.pem "
              "[--tls 1.2|1.3] [--server-name NAME]~n", [Msg]),
    halt(2).

parse([], Acc) ->
    [maps:is_key(K, Acc) orelse usage("--host, --port, --cert, --key and --ca are required")
     || K <- [host, port, cert, key, ca]],
    Acc;
parse([Name, Value | Rest], Acc) ->
    Key = case Name of
              "--host" -> host;
              "--port" -> port;
              "--cert" -> cert;
              "--key" -> key;
              "--ca" -> ca;
              "--tls" -> tls;
              "--server-name" -> server_name;
              _ -> usage("unknown option " ++ Name)
          end,
    parse(Rest, Acc#{Key => Value});
parse([_], _) ->
    usage("missing value").

server_name(#{server_name := N}) -> N;
server_name(#{host := "127.0.0.1"}) -> "localhost";
server_name(#{host := "::1"}) -> "localhost";
server_name(#{host := H}) -> H.

versions(#{tls := "1.2"}) -> ['tlsv1.2'];
versions(#{tls := "1.3"}) -> ['tlsv1.3'];
versions(#{tls := _}) -> usage("--tls must be 1.2 or 1.3");
versions(_) -> ['tlsv1.3', 'tlsv1.2'].

fail(Res, Outcome, Stage, Error) ->
    {Res#{outcome => Outcome, stage => Stage, error => Error}, 1}.

text(Term) -> lists:flatten(io_lib:print(Term, 1, 1000000, -1)).

run(Args = #{host := Host, port := PortS}, Res) ->
    Port = try list_to_integer(PortS) catch _:_ -> usage("--port must be a number") end,
    Versions = versions(Args),
    case gen_tcp:connect(Host, Port, [binary, {active, false}, {packet, line},
                                      {packet_size, ?REPLY_MAX}], ?TIMEOUT) of
        {error, Why} ->
            {R, _} = fail(Res, "rejected", "connect", text(Why)),
            {R, 2};
        {ok, Sock} ->
            Plain = fun(Cmd) -> plain_step(Sock, Cmd) end,
            case smtp_steps(Plain, [{"greeting", none, 2}, {"ehlo", "EHLO probe.lab.test\r\n", 2},
                                    {"starttls", "STARTTLS\r\n", 2}], "rejected") of
                {error, Stage, Outcome, Err} -> fail(Res, Outcome, Stage, Err);
                ok ->
                    ok = inet:setopts(Sock, [{packet, raw}]),
                    Opts = [{verify, verify_peer}, {cacertfile, maps:get(ca, Args)},
                            {certfile, maps:get(cert, Args)}, {keyfile, maps:get(key, Args)},
                            {server_name_indication, server_name(Args)},
                            {versions, Versions},
                            {cb_info, {?MODULE, tcp, tcp_closed, tcp_error, tcp_passive}}],
                    case ssl:connect(Sock, Opts, ?TIMEOUT) of
                        {error, Why} ->
                            fail(Res#{tls_alert => alert_of(Why)}, "tls_failed", "handshake", text(Why));
                        {ok, Tls} ->
                            deliver(Tls, Res)
                    end
            end
    end.

alert_of({tls_alert, {Name, _}}) -> Name;
alert_of(_) -> none.

deliver(Tls, Res) ->
    Step = fun(Cmd) -> tls_step(Tls, Cmd) end,
    Message = "From: <probe@probe.lab.test>\r\nTo: <user@lab.test>\r\n"
              "Subject: umlab client probe\r\n\r\nA small message from a real client stack.\r\n.\r\n",
    case smtp_steps(Step, [{"ehlo-tls", "EHLO probe.lab.test\r\n", 2},
                           {"mail", "MAIL FROM:<probe@probe.lab.test>\r\n", 2},
                           {"rcpt", "RCPT TO:<user@lab.test>\r\n", 2},
                           {"data", "DATA\r\n", 3},
                           {"message", Message, 2}], "tls_failed") of
        {error, Stage, Outcome, Err, Why} ->
            fail(Res#{tls_alert => alert_of(Why)}, Outcome, Stage, Err);
        {error, Stage, Outcome, Err} ->
            fail(Res, Outcome, Stage, Err);
        ok ->
            Stage = case Step("QUIT\r\n") of
                        {reply, 2, _} -> "done";
                        _ -> "quit"
                    end,
            _ = ssl:close(Tls),
            {Res#{outcome => "delivered", stage => Stage, error => ""}, 0}
    end.

smtp_steps(_, [], _) -> ok;
smtp_steps(Step, [{Stage, Cmd, Want} | Rest], IoOutcome) ->
    case Step(Cmd) of
        {reply, Want, _} -> smtp_steps(Step, Rest, IoOutcome);
        {reply, _, Reply} -> {error, Stage, "rejected", Reply};
        malformed -> {error, Stage, "rejected", "malformed SMTP reply"};
        {io_error, Why} -> {error, Stage, IoOutcome, text(Why), Why}
    end.

plain_step(Sock, Cmd) ->
    case Cmd =:= none orelse gen_tcp:send(Sock, Cmd) of
        {error, Why} -> {io_error, Why};
        _ -> read_reply(fun() -> gen_tcp:recv(Sock, 0, ?TIMEOUT) end, [])
    end.

tls_step(Tls, Cmd) ->
    case ssl:send(Tls, Cmd) of
        {error, Why} -> {io_error, alert_behind(Tls, Why)};
        ok ->
            case read_reply(fun() -> tls_line(Tls) end, []) of
                {io_error, {tls_alert, _}} = E -> E;
                {io_error, Why} -> {io_error, alert_behind(Tls, Why)};
                Reply -> Reply
            end
    end.

%% A write that failed because the server's alert closed the connection: the
%% alert as ssl reported it, {tls_alert, {Name, Text}} as ssl:recv would
%% return it, when ssl logged one; else Why.
alert_behind(Tls, Why) -> alert_behind(Tls, Why, 20).

%% ssl may log the alert a little after the write failed: wait up to 1 s.
alert_behind(Tls, Why, Tries) ->
    case ets:lookup(probe_alert, received) of
        [{received, Name, Text}] -> {tls_alert, {Name, Text}};
        [] when Tries > 0 -> timer:sleep(50), alert_behind(Tls, Why, Tries - 1);
        [] -> Why
    end.

%% Logger handler: ssl's "received SERVER ALERT" notices, kept with the
%% alert's name as ssl spells it in {tls_alert, {Name, Text}}.
log(Event, _Config) ->
    Text = try lists:flatten(logger_formatter:format(Event, #{single_line => false,
                                                             template => [msg]}))
           catch _:_ -> "" end,
    case string:split(Text, "received SERVER ALERT: Fatal - ") of
        [_, Desc] ->
            Name = string:replace(string:lowercase(string:trim(Desc)), " ", "_", all),
            ets:insert(probe_alert, {received, list_to_atom(lists:flatten(Name)), Text});
        _ -> ok
    end.

%% One line from the TLS socket (raw mode: no setopts after the handshake,
%% which would race the server's alert), at most ?REPLY_MAX bytes.
tls_line(Tls) ->
    Buf = case get(tls_buf) of undefined -> <<>>; B -> B end,
    case binary:match(Buf, <<"\n">>) of
        {Pos, 1} ->
            <<Line:(Pos + 1)/binary, Rest/binary>> = Buf,
            put(tls_buf, Rest),
            {ok, Line};
        nomatch when byte_size(Buf) > ?REPLY_MAX ->
            {ok, <<"line too long">>};
        nomatch ->
            case ssl:recv(Tls, 0, ?TIMEOUT) of
                {ok, More} -> put(tls_buf, <<Buf/binary, More/binary>>), tls_line(Tls);
                Error -> Error
            end
    end.

%% One reply, all its lines (each at most ?REPLY_MAX bytes by packet_size).
read_reply(Recv, Acc) ->
    case Recv() of
        {error, Why} -> {io_error, Why};
        {ok, Line} when byte_size(Line) >= 4 ->
            Text = string:trim(binary_to_list(Line), trailing, "\r\n"),
            All = Acc ++ [Text],
            case Line of
                <<C1, C2, C3, Sep, _/binary>> when C1 >= $1, C1 =< $5,
                                                    C2 >= $0, C2 =< $9, C3 >= $0, C3 =< $9 ->
                    case Sep of
                        $- when length(All) < 100 -> read_reply(Recv, All);
                        $- -> malformed;
                        _ -> {reply, C1 - $0, lists:flatten(lists:join(" / ", All))}
                    end;
                _ -> malformed
            end;
        {ok, _} -> malformed
    end.

%% --- the socket layer under ssl: gen_tcp, watching the client's flight ---

send(Socket, Data) ->
    watch(iolist_to_binary(Data)),
    gen_tcp:send(Socket, Data).

%% logger's optional handler callbacks (this module is also a handler)
'$handle_undefined_function'(adding_handler, [Config]) -> {ok, Config};
'$handle_undefined_function'(removing_handler, [_]) -> ok;
'$handle_undefined_function'(changing_config, [_, _, New]) -> {ok, New};
'$handle_undefined_function'(F, Args) ->
    case erlang:function_exported(gen_tcp, F, length(Args)) of
        true -> apply(gen_tcp, F, Args);
        false -> apply(inet, F, Args)
    end.

watch(Bin) ->
    case ets:lookup(probe_flight, done) of
        [{done, false}] ->
            [{buf, Buf}] = ets:lookup(probe_flight, buf),
            records(<<Buf/binary, Bin/binary>>);
        _ -> ok
    end.

records(<<Type, _:16, Len:16, Frag:Len/binary, Rest/binary>>) ->
    case Type of
        22 ->
            case Frag of
                <<11, _:24, ListLen:24, _/binary>> ->
                    ets:insert(probe_flight, {sent, ListLen > 0});
                _ -> ok
            end,
            records(Rest);
        T when T =:= 20; T =:= 23 ->
            ets:insert(probe_flight, [{done, true}, {buf, <<>>}]);
        _ -> records(Rest)
    end;
records(Partial) when byte_size(Partial) < 16384 + 2048 + 5 ->
    ets:insert(probe_flight, {buf, Partial});
records(_) ->
    ets:insert(probe_flight, [{done, true}, {buf, <<>>}]).

%% --- the JSON line ---

json(#{version := V, outcome := O, stage := S, error := E, certificate_sent := C}) ->
    ["{\"stack\":\"erlang\",\"version\":", str(V), ",\"outcome\":", str(O), ",\"stage\":", str(S),
     ",\"error\":", str(E), ",\"certificate_sent\":", atom_to_list(C), "}"].

str(S) ->
    [$", [esc(C) || C <- unicode:characters_to_list(S)], $"].

esc($") -> "\\\"";
esc($\\) -> "\\\\";
esc(C) when C < 16#20 -> io_lib:format("\\u~4.16.0b", [C]);
esc(C) -> unicode:characters_to_binary([C]).
