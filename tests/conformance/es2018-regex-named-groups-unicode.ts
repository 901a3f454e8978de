// Feature: RegExp named capture groups combined with the u (unicode) flag (ES2015) — named groups introduced in ES2018.
export function run(): unknown {
  const re = /(?<emoji>\p{Emoji_Presentation})\s(?<word>\w+)/u;
  const m = re.exec("x 😀 smile")!;
  return {
    emoji: m.groups!.emoji,
    word: m.groups!.word,
    codePointLength: [...m.groups!.emoji].length,
    astral: /^(?<c>.)$/u.exec("😀")!.groups!.c,
  };
}
