import openai


def test_chat_round_trip(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="spark", messages=[{"role": "user", "content": "Say hello"}], max_tokens=8
    )
    assert reply.model == "spark"
    assert reply.id.startswith("chatcmpl-")
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage is not None and reply.usage.completion_tokens <= 8
