//! Word lists for plausible Chinese names of communities, compounds and grids.

pub const COMMUNITY_STEMS: &[&str] = &[
    "西落凤街", "公园西路", "县府街", "西龙王庙", "宽巷子", "北门", "工农兵路", "海西路",
    "光明西路", "新春", "民族团结", "回民中学", "通顺街", "旧城北门", "阿拉善北路", "健康街",
    "环河北", "东乌素图", "西乌素图", "钢铁路北", "钢铁路南", "巴彦淖尔北路", "公园东路", "中山西路",
    "成吉思汗西街", "滨河", "长胜", "呼伦贝尔北路", "育才", "红旗", "新春北", "北垣街",
    "通道南街", "通道北街", "牛街", "大召", "丰州路", "新华西", "光华", "兴华",
    "团结", "和平", "友谊", "繁荣", "富强", "攸攸板村", "后窑子村", "乌素图村",
    "坝口子村", "一间房村",
];

pub const COMPOUND_PREFIXES: &[&str] = &[
    "锦绣", "华建", "民族", "回民", "光明", "通道", "钢铁", "桥华", "新城", "铁路",
    "电业", "粮食", "供销", "水利", "邮电", "教育", "卫生", "建行", "工行", "林业",
    "畜牧", "交通", "纺织", "电力", "煤炭", "二毛", "糖厂", "化工", "物资", "气象",
];

pub const COMPOUND_SUFFIXES: &[&str] =
    &["小区", "家园", "花园", "苑", "公寓", "家属院", "新村", "里", "雅居", "佳苑"];

pub const CHINESE_NUMERALS: &[&str] =
    &["一", "二", "三", "四", "五", "六", "七", "八", "九", "十"];

/// 1 → 一, 12 → 十二, 20 → 二十.
pub fn numeral(n: usize) -> String {
    match n {
        0 => "零".into(),
        1..=10 => CHINESE_NUMERALS[n - 1].into(),
        11..=19 => format!("十{}", CHINESE_NUMERALS[n - 11]),
        _ => {
            let tens = CHINESE_NUMERALS[(n / 10).min(10) - 1];
            match n % 10 {
                0 => format!("{tens}十"),
                ones => format!("{tens}十{}", CHINESE_NUMERALS[ones - 1]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numerals() {
        assert_eq!(super::numeral(1), "一");
        assert_eq!(super::numeral(12), "十二");
        assert_eq!(super::numeral(20), "二十");
        assert_eq!(super::numeral(37), "三十七");
    }
}
